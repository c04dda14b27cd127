"""Fixtures: real Debian `docker-registry` processes (plain, htpasswd Basic auth, self-signed TLS) on loopback,
filled through the OCI HTTP API, and a SimRegistry for what the real one cannot do (429, 403, 5xx, hangs, Bearer)."""

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
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.registry.sim import SimRegistry

USERNAME = "robot"
PASSWORD = "correct-horse-battery"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class RealRegistry:
    """A running `docker-registry serve`: where it listens and how to reach it."""

    host: str  # "127.0.0.1:PORT"
    scheme: str
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not on PATH (apt-get install docker-registry apache2-utils openssl)")
    return path


class _Pusher:
    """Push blobs, manifests and indexes with the OCI HTTP API (what `docker push` does, without docker)."""

    def __init__(self, registry: RealRegistry) -> None:
        self.registry = registry
        self.context: ssl.SSLContext | None = None
        if registry.ca_file is not None:
            self.context = ssl.create_default_context(cafile=str(registry.ca_file))

    def _request(
        self, method: str, url: str, body: bytes = b"", content_type: str | None = None
    ) -> tuple[int, dict[str, str]]:
        data = body if method in ("PUT", "POST") else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) URLs of the fixture
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.registry.username and self.registry.password:
            raw = f"{self.registry.username}:{self.registry.password}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(raw).decode())
        with urllib.request.urlopen(request, context=self.context, timeout=10) as response:  # noqa: S310 - test fixture URL
            return response.status, dict(response.headers)

    def blob(self, repo: str, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _, headers = self._request("POST", f"{self.registry.base}/v2/{repo}/blobs/uploads/")
        location = headers["Location"]
        if location.startswith("/"):
            location = self.registry.base + location
        separator = "&" if "?" in location else "?"
        status, _ = self._request("PUT", f"{location}{separator}digest={digest}", data, "application/octet-stream")
        assert status == 201, status
        return digest, len(data)

    def manifest(self, repo: str, reference: str, body: dict[str, object], media_type: str) -> tuple[str, int]:
        raw = json.dumps(body, sort_keys=True).encode()
        status, _ = self._request("PUT", f"{self.registry.base}/v2/{repo}/manifests/{reference}", raw, media_type)
        assert status == 201, status
        return "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw)

    def image(self, repo: str, tag: str, platform: str = "linux/amd64", *, tagged: bool = True) -> tuple[str, int]:
        os_name, arch = platform.split("/")[:2]
        config_digest, config_size = self.blob(repo, json.dumps({"os": os_name, "architecture": arch}).encode())
        layer_digest, layer_size = self.blob(repo, f"layer {repo}:{tag} {platform}".encode())
        body: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}
            ],
        }
        raw = json.dumps(body, sort_keys=True).encode()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        return self.manifest(repo, tag if tagged else digest, body, OCI_MANIFEST)

    def index(self, repo: str, tag: str, platforms: list[str]) -> str:
        entries = []
        for platform in platforms:
            digest, size = self.image(repo, tag, platform, tagged=False)
            os_name, arch = platform.split("/")[:2]
            entries.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "platform": {"os": os_name, "architecture": arch},
                }
            )
        body: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        return self.manifest(repo, tag, body, OCI_INDEX)[0]


def _start(
    folder: Path, *, htpasswd: Path | None = None, tls: tuple[Path, Path] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    binary = _need_binary("docker-registry")
    port = _free_port()
    lines = [
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
    if tls is not None:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd is not None:
        lines += ["auth:", "  htpasswd:", "    realm: test-registry", f"    path: {htpasswd}"]
    config = folder / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = (folder / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited: {(folder / 'registry.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("docker-registry did not listen within 10 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRegistry]:
    """Plain-HTTP docker-registry: team/app (1.2.2, 1.2.3, 1.3.0, latest), team/armonly:1.0 (arm64-only index)."""
    folder = tmp_path_factory.mktemp("registry-plain")
    process, host = _start(folder)
    try:
        registry = RealRegistry(host, "http")
        pusher = _Pusher(registry)
        for tag in ("1.2.2", "1.2.3", "1.3.0", "latest"):
            pusher.image("team/app", tag)
        pusher.index("team/armonly", "1.0", ["linux/arm64"])
        pusher.index("team/multi", "2.0", ["linux/amd64", "linux/arm64"])
        yield registry
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRegistry]:
    """docker-registry with htpasswd Basic auth (bcrypt, `htpasswd -Bbn`) holding private/app:1.0."""
    folder = tmp_path_factory.mktemp("registry-auth")
    htpasswd_bin = _need_binary("htpasswd")
    entry = subprocess.run([htpasswd_bin, "-Bbn", USERNAME, PASSWORD], check=True, capture_output=True).stdout
    htpasswd = folder / "htpasswd"
    htpasswd.write_bytes(entry.strip() + b"\n")
    process, host = _start(folder, htpasswd=htpasswd)
    try:
        registry = RealRegistry(host, "http", username=USERNAME, password=PASSWORD)
        _Pusher(registry).image("private/app", "1.0")
        yield registry
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRegistry]:
    """docker-registry over TLS with a self-signed certificate for 127.0.0.1 and localhost, holding team/app:1.0."""
    folder = tmp_path_factory.mktemp("registry-tls")
    openssl = _need_binary("openssl")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    process, host = _start(folder, tls=(cert, key))
    try:
        registry = RealRegistry(host, "https", ca_file=cert)
        _Pusher(registry).image("team/app", "1.0")
        yield registry
    finally:
        _stop(process)


@pytest.fixture
async def sim() -> AsyncIterator[SimRegistry]:
    """A started SimRegistry with team/app (1.2.2, 1.2.3 for amd64+arm64) and private/app:1.0."""
    registry = SimRegistry()
    await registry.start()
    registry.add_image("team/app", "1.2.2")
    registry.add_image("team/app", "1.2.3", platforms=["linux/amd64", "linux/arm64"])
    registry.add_image("private/app", "1.0")
    try:
        yield registry
    finally:
        await registry.stop()
