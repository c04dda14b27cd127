"""Fixtures: real Debian `docker-registry` processes (plain, htpasswd Basic auth, self-signed TLS) on loopback,
filled through the OCI HTTP API, and a SimRegistry for what the real one cannot do (429, 403, 5xx, hangs, Bearer)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.oci.docker_registry import Pusher, RealRegistryProcess, RegistryUnavailable
from testkit.oci.simregistry import SimRegistry

USERNAME = "robot"
PASSWORD = "correct-horse-battery"


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


def _need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not on PATH (apt-get install docker-registry apache2-utils openssl)")
    return path


def _start(folder: Path, *, htpasswd: Path | None = None, tls: tuple[Path, Path] | None = None) -> RealRegistryProcess:
    _need_binary("docker-registry")
    try:
        return RealRegistryProcess.start(folder, htpasswd=htpasswd, tls=tls, realm="test-registry")
    except RegistryUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRegistry]:
    """Plain-HTTP docker-registry: team/app (1.2.2, 1.2.3, 1.3.0, latest), team/armonly:1.0 (arm64-only index)."""
    folder = tmp_path_factory.mktemp("registry-plain")
    with _start(folder) as real:
        pusher = Pusher(real.base)
        for tag in ("1.2.2", "1.2.3", "1.3.0", "latest"):
            pusher.image("team/app", tag)
        pusher.index("team/armonly", "1.0", ["linux/arm64"])
        pusher.index("team/multi", "2.0", ["linux/amd64", "linux/arm64"])
        yield RealRegistry(real.host, "http")


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRegistry]:
    """docker-registry with htpasswd Basic auth (bcrypt, `htpasswd -Bbn`) holding private/app:1.0."""
    folder = tmp_path_factory.mktemp("registry-auth")
    htpasswd_bin = _need_binary("htpasswd")
    entry = subprocess.run([htpasswd_bin, "-Bbn", USERNAME, PASSWORD], check=True, capture_output=True).stdout
    htpasswd = folder / "htpasswd"
    htpasswd.write_bytes(entry.strip() + b"\n")
    with _start(folder, htpasswd=htpasswd) as real:
        Pusher(real.base, auth=(USERNAME, PASSWORD)).image("private/app", "1.0")
        yield RealRegistry(real.host, "http", username=USERNAME, password=PASSWORD)


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
    with _start(folder, tls=(cert, key)) as real:
        Pusher(real.base, ca_file=cert).image("team/app", "1.0")
        yield RealRegistry(real.host, "https", ca_file=cert)


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
