"""A real Debian `docker-registry serve` on loopback, filled through the OCI HTTP API (no docker).

Used by the benches, the registry test fixtures and scripts/containerd_corpus.py:

with RealRegistryProcess.start(folder) as registry:   # raises RegistryUnavailable without the binary
    Pusher(registry.base).image("team/app", "1.0")
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


class RegistryUnavailable(RuntimeError):
    """`docker-registry` is not installed, or it did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def registry_config(
    folder: Path,
    addr: str,
    *,
    htpasswd: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    realm: str = "registry",
    debug_log: bool = False,
) -> str:
    """The `config.yml` of a registry storing under `folder`/data and listening on `addr` (host:port)."""
    log = ["  level: warn"] if debug_log else ["  level: error", "  accesslog:", "    disabled: true"]
    lines = [
        "version: 0.1",
        "log:",
        *log,
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {folder / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: {addr}",
    ]
    if tls is not None:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd is not None:
        lines += ["auth:", "  htpasswd:", f"    realm: {realm}", f"    path: {htpasswd}"]
    return "\n".join(lines) + "\n"


@dataclass
class RealRegistryProcess:
    """A running `docker-registry serve` bound to a loopback address (plain HTTP unless started with TLS)."""

    process: subprocess.Popen[bytes]
    host: str  # "127.0.0.1:PORT"
    folder: Path
    scheme: str = "http"

    @property
    def base(self) -> str:
        """The registry's base URL."""
        return f"{self.scheme}://{self.host}"

    @classmethod
    def start(
        cls,
        folder: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        htpasswd: Path | None = None,
        tls: tuple[Path, Path] | None = None,
        realm: str = "registry",
        debug_log: bool = False,
        timeout_s: float = 10.0,
    ) -> RealRegistryProcess:
        """Write a config under `folder`, start the registry and wait until it accepts connections.

        `htpasswd` turns on Basic auth under `realm`; `tls` is (certificate, key); `debug_log` keeps warnings and
        the access log in `folder`/registry.log.
        """
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryUnavailable("`docker-registry` is not on PATH (apt-get install docker-registry)")
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port(host) if port is None else port
        config = folder / "config.yml"
        config.write_text(
            registry_config(folder, f"{host}:{port}", htpasswd=htpasswd, tls=tls, realm=realm, debug_log=debug_log)
        )
        log_path = folder / "registry.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RegistryUnavailable(f"docker-registry exited: {log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection((host, port), timeout=0.2):
                    return cls(process, f"{host}:{port}", folder, "https" if tls else "http")
            except OSError:
                time.sleep(0.05)
        process.kill()
        process.wait()
        raise RegistryUnavailable(f"docker-registry did not listen within {timeout_s} s")

    def stop(self) -> None:
        """Terminate the registry (kill it after 5 s)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class Pusher:
    """Pushes blobs, manifests and indexes with the registry's HTTP API (what `docker push` does)."""

    def __init__(self, base: str, *, auth: tuple[str, str] | None = None, ca_file: Path | None = None) -> None:
        self.base = base.rstrip("/")
        self.auth = auth
        self.context = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None

    def _request(self, method: str, url: str, body: bytes = b"", content_type: str | None = None) -> tuple[int, str]:
        data = body if method in ("PUT", "POST") else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback registry URL
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.auth is not None:
            raw = f"{self.auth[0]}:{self.auth[1]}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(raw).decode())
        with urllib.request.urlopen(request, context=self.context, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status), str(response.headers.get("Location") or "")

    def blob(self, repo: str, data: bytes) -> tuple[str, int]:
        """Upload one blob (monolithic POST + PUT); return its digest and size."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _, location = self._request("POST", f"{self.base}/v2/{repo}/blobs/uploads/")
        if location.startswith("/"):
            location = self.base + location
        separator = "&" if "?" in location else "?"
        status, _ = self._request("PUT", f"{location}{separator}digest={digest}", data, "application/octet-stream")
        if status != 201:
            raise RuntimeError(f"blob upload answered {status}")
        return digest, len(data)

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> tuple[str, int]:
        """PUT a manifest or index (bytes as they are) under a tag or digest; return its digest and size."""
        status, _ = self._request("PUT", f"{self.base}/v2/{repo}/manifests/{reference}", raw, media_type)
        if status != 201:
            raise RuntimeError(f"manifest upload answered {status}")
        return "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw)

    def _one_platform(self, repo: str, tag: str, platform: str, *, tagged: bool) -> tuple[str, int]:
        os_name, arch = platform.split("/")[:2]
        config_digest, config_size = self.blob(repo, json.dumps({"os": os_name, "architecture": arch}).encode())
        layer_digest, layer_size = self.blob(repo, f"layer {repo}:{tag} {platform}".encode())
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}
            ],
        }
        raw = json.dumps(body, sort_keys=True).encode()
        reference = tag if tagged else "sha256:" + hashlib.sha256(raw).hexdigest()
        return self.put_manifest(repo, reference, raw, OCI_MANIFEST)

    def image(self, repo: str, tag: str, platform: str = "linux/amd64") -> str:
        """Push a one-layer image for `platform` under `tag`; return the manifest digest."""
        return self._one_platform(repo, tag, platform, tagged=True)[0]

    def index(self, repo: str, tag: str, platforms: list[str]) -> str:
        """Push an OCI index under `tag` with one untagged one-layer image per platform; return its digest."""
        entries = []
        for platform in platforms:
            digest, size = self._one_platform(repo, tag, platform, tagged=False)
            os_name, arch = platform.split("/")[:2]
            entries.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "platform": {"os": os_name, "architecture": arch},
                }
            )
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        return self.put_manifest(repo, tag, json.dumps(body, sort_keys=True).encode(), OCI_INDEX)[0]
