"""A real Debian `docker-registry serve` on loopback for benches, filled through the OCI HTTP API (no docker).

with RealRegistryProcess.start(folder) as registry:   # raises RegistryUnavailable without the binary
    Pusher(registry.base).image("team/app", "1.0")
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


class RegistryUnavailable(RuntimeError):
    """`docker-registry` is not installed, or it did not start."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RealRegistryProcess:
    """A running plain-HTTP `docker-registry serve` bound to 127.0.0.1."""

    process: subprocess.Popen[bytes]
    host: str  # "127.0.0.1:PORT"
    folder: Path

    @property
    def base(self) -> str:
        """The registry's base URL."""
        return f"http://{self.host}"

    @classmethod
    def start(cls, folder: Path, timeout_s: float = 10.0) -> RealRegistryProcess:
        """Write a config under `folder`, start the registry and wait until it accepts connections."""
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryUnavailable("`docker-registry` is not on PATH (apt-get install docker-registry)")
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = folder / "config.yml"
        config.write_text(
            "\n".join(
                [
                    "version: 0.1",
                    "log:",
                    "  level: error",
                    "  accesslog:",
                    "    disabled: true",
                    "storage:",
                    "  filesystem:",
                    f"    rootdirectory: {folder / 'data'}",
                    "  delete:",
                    "    enabled: true",
                    "http:",
                    f"  addr: 127.0.0.1:{port}",
                ]
            )
            + "\n"
        )
        log_path = folder / "registry.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RegistryUnavailable(f"docker-registry exited: {log_path.read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return cls(process, f"127.0.0.1:{port}", folder)
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
    """Pushes blobs and single-platform OCI images with the registry's HTTP API (what `docker push` does)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def _request(self, method: str, url: str, body: bytes = b"", content_type: str | None = None) -> tuple[int, str]:
        data = body if method in ("PUT", "POST") else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback registry URL
        if content_type:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback registry URL
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

    def image(self, repo: str, tag: str, platform: str = "linux/amd64") -> str:
        """Push a one-layer image for `platform` under `tag`; return the manifest digest."""
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
        status, _ = self._request("PUT", f"{self.base}/v2/{repo}/manifests/{tag}", raw, OCI_MANIFEST)
        if status != 201:
            raise RuntimeError(f"manifest upload answered {status}")
        return "sha256:" + hashlib.sha256(raw).hexdigest()
