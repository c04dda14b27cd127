"""Regenerate tests/corpus/containerd.jsonl by really pulling through containerd's CRI PullImage.

Run as root (containerd needs it):
``sudo .venv/bin/python scripts/containerd_corpus.py --out tests/corpus/containerd.jsonl``.

Everything runs on loopback in a temporary folder: Debian ``docker-registry`` instances (plain HTTP, htpasswd basic
auth, TLS with a self-signed, a mismatched and an expired certificate), a small fault registry of our own (403, 429
with Docker Hub's rate-limit headers and body, 5xx, Bearer token refusals, a registry that never answers), a small
DNS server (NXDOMAIN, SERVFAIL, silence), and ``containerd --config`` in its own mount namespace so that its
``/etc/resolv.conf`` points at that DNS server and its content store sits on a 2 MiB tmpfs (a real
``no space left on device``). Each case calls ``runtime.v1.ImageService/PullImage`` over containerd's socket, the
call kubelet makes, and writes the error the way kubelet writes it into the ``Failed`` event
(``fmt.Sprintf("Failed to pull image %q: %v", image, err)`` in pkg/kubelet/images/image_manager.go).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hashlib
import http.client
import importlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from testkit.oci.docker_registry import Pusher, RealRegistryProcess, free_port

HERE = Path(__file__).resolve().parent
PROTO = HERE / "cri_api.proto"
USER, PASSWORD = "corpus", "corpus-secret"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
HUB_429_BODY = json.dumps(
    {
        "errors": [
            {
                "code": "TOOMANYREQUESTS",
                "message": "You have reached your pull rate limit. You may increase the limit by authenticating and "
                "upgrading: https://www.docker.com/increase-rate-limit",
            }
        ]
    }
).encode()
# grpc-go spells code names this way in "rpc error: code = X desc = Y" (google.golang.org/grpc/codes String()).
GO_CODE_NAMES = {
    "OK": "OK",
    "CANCELLED": "Canceled",
    "UNKNOWN": "Unknown",
    "INVALID_ARGUMENT": "InvalidArgument",
    "DEADLINE_EXCEEDED": "DeadlineExceeded",
    "NOT_FOUND": "NotFound",
    "ALREADY_EXISTS": "AlreadyExists",
    "PERMISSION_DENIED": "PermissionDenied",
    "RESOURCE_EXHAUSTED": "ResourceExhausted",
    "FAILED_PRECONDITION": "FailedPrecondition",
    "ABORTED": "Aborted",
    "OUT_OF_RANGE": "OutOfRange",
    "UNIMPLEMENTED": "Unimplemented",
    "INTERNAL": "Internal",
    "UNAVAILABLE": "Unavailable",
    "DATA_LOSS": "DataLoss",
    "UNAUTHENTICATED": "Unauthenticated",
}


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def sha256(data: bytes) -> str:
    """OCI digest of data."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def go_quote(text: str) -> str:
    """Go's %q for the printable ASCII image references used here."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Processes:
    """Child processes started by this script, stopped in reverse order whatever happens."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start argv with its output in log."""
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        """Terminate every child this script started (by pid), then kill the stubborn ones."""
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.started):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


# ---------------------------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Certs:
    """Self-signed certificates: one for 127.0.0.1/localhost, one that expired in 2020."""

    good_cert: Path
    good_key: Path
    expired_cert: Path
    expired_key: Path


def make_certs(folder: Path) -> Certs:
    """Create the certificates with openssl."""
    folder.mkdir()
    good_cert, good_key = folder / "good.crt", folder / "good.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(good_key),
            "-out",
            str(good_cert),
        ],
        check=True,
        capture_output=True,
    )
    # `openssl req` cannot back-date a certificate; `openssl ca` can (-startdate/-enddate).
    ca_dir = folder / "ca"
    ca_dir.mkdir()
    (ca_dir / "index.txt").write_text("")
    (ca_dir / "serial").write_text("01\n")
    (ca_dir / "ca.cnf").write_text(
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n"
        "default_md = sha256\npolicy = p\ncopy_extensions = copy\n[p]\ncommonName = supplied\n"
    )
    expired_cert, expired_key = folder / "expired.crt", folder / "expired.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(expired_key),
            "-out",
            "expired.csr",
        ],
        check=True,
        capture_output=True,
        cwd=ca_dir,
    )
    subprocess.run(
        [
            "openssl",
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            str(expired_key),
            "-in",
            "expired.csr",
            "-out",
            str(expired_cert),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200201000000Z",
        ],
        check=True,
        capture_output=True,
        cwd=ca_dir,
    )
    return Certs(good_cert, good_key, expired_cert, expired_key)


# ---------------------------------------------------------------------------------------------------------------
# Debian docker-registry


@dataclass(frozen=True)
class Registry:
    """One running docker-registry."""

    host: str  # host:port as it appears in image references
    scheme: str
    auth: tuple[str, str] | None = None

    @property
    def base(self) -> str:
        """The registry's base URL."""
        return f"{self.scheme}://{self.host}"


def start_registry(
    procs: Processes,
    work: Path,
    name: str,
    addr: str,
    *,
    htpasswd: Path | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Registry:
    """Start `docker-registry serve` on addr with its own storage."""
    root = work / f"registry-{name}"
    root.mkdir()
    host, port = addr.rsplit(":", 1)
    real = RealRegistryProcess.start(
        root, host=host, port=int(port), htpasswd=htpasswd, tls=tls, realm="corpus", debug_log=True, timeout_s=15.0
    )
    procs.started.append(real.process)
    return Registry(addr, real.scheme, (USER, PASSWORD) if htpasswd else None)


def request(
    registry: Registry, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to a registry (plain HTTP only: pushes go to the plain and basic-auth registries)."""
    host, port = registry.host.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    sent = dict(headers or {})
    if registry.auth is not None:
        token = base64.b64encode(f"{registry.auth[0]}:{registry.auth[1]}".encode()).decode()
        sent["Authorization"] = f"Basic {token}"
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------------------
# Tiny OCI images


@dataclass(frozen=True)
class Image:
    """An OCI image: its blobs by digest and its manifest."""

    blobs: dict[str, bytes]
    manifest: bytes
    layer_digest: str

    @property
    def digest(self) -> str:
        """Digest of the manifest."""
        return sha256(self.manifest)


def build_image(arch: str, payload: bytes) -> Image:
    """A one-layer image for linux/arch whose only file holds payload."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tar:
        info = tarfile.TarInfo("payload.bin")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = tar_buf.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/payload.bin"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(tar_bytes)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
        }
    ).encode()
    return Image({sha256(config): config, sha256(layer): layer}, manifest, sha256(layer))


def index_of(images: dict[str, Image]) -> bytes:
    """An OCI index listing the images under their linux/ARCH platforms."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": image.digest,
                    "size": len(image.manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for arch, image in images.items()
            ],
        }
    ).encode()


def push(registry: Registry, repo: str, tag: str, image: Image) -> None:
    """Push image to registry as repo:tag through the OCI distribution API."""
    pusher = Pusher(registry.base, auth=registry.auth)
    for data in image.blobs.values():
        pusher.blob(repo, data)
    pusher.put_manifest(repo, tag, image.manifest, OCI_MANIFEST)


# ---------------------------------------------------------------------------------------------------------------
# The fault registry: what docker-registry cannot answer


class FaultRegistry(ThreadingHTTPServer):
    """An OCI registry that fails on purpose; the first path segment of the repository picks the fault."""

    daemon_threads = True

    def __init__(self, image: Image) -> None:
        super().__init__(("127.0.0.1", 0), FaultHandler)
        self.image = image
        self.stopping = threading.Event()

    @property
    def host(self) -> str:
        """host:port of this registry."""
        return f"127.0.0.1:{self.server_address[1]}"


class FaultHandler(BaseHTTPRequestHandler):
    """Request handler of FaultRegistry."""

    server: FaultRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def do_HEAD(self) -> None:
        """HEAD is GET without a body."""
        self.handle_any(send_body=False)

    def do_GET(self) -> None:
        """Serve or fail."""
        self.handle_any(send_body=True)

    def do_POST(self) -> None:
        """Only the token endpoint takes POST (OAuth2 with a password): refuse the credentials."""
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.reply(401, {"Content-Type": "application/json"}, b'{"details":"incorrect username or password"}')

    def reply(self, status: int, headers: dict[str, str], body: bytes, *, send_body: bool = True) -> None:
        """Send one response."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def errors(
        self, status: int, code: str, message: str, send_body: bool, extra: dict[str, str] | None = None
    ) -> None:
        """Send an OCI error body."""
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
        headers = {"Content-Type": "application/json", "Docker-Distribution-Api-Version": "registry/2.0"}
        self.reply(status, headers | (extra or {}), body, send_body=send_body)

    def handle_any(self, *, send_body: bool) -> None:
        """Route by path."""
        path = self.path.split("?", 1)[0]
        if path == "/token":
            # Anonymous token requests are refused with 403, requests with credentials with 401.
            if "Authorization" in self.headers:
                self.reply(401, {"Content-Type": "application/json"}, b'{"details":"incorrect username or password"}')
            else:
                self.reply(403, {"Content-Type": "application/json"}, b'{"details":"access to the resource is denied"}')
            return
        if path == "/v2/":
            self.reply(200, {"Content-Type": "application/json"}, b"{}", send_body=send_body)
            return
        parts = path.split("/")
        # /v2/<fault>/app/(manifests|blobs)/<ref>
        if len(parts) != 6 or parts[1] != "v2":
            self.errors(404, "NAME_UNKNOWN", "repository name not known to registry", send_body)
            return
        fault, kind, ref = parts[2], parts[4], parts[5]
        if fault == "hang":
            self.server.stopping.wait(120)
            return
        if kind == "manifests" and self.manifest_fault(fault, send_body):
            return
        if kind == "blobs" and self.blob_fault(fault, send_body):
            return
        self.serve_content(kind, ref, send_body)

    def manifest_fault(self, fault: str, send_body: bool) -> bool:
        """Fail a manifest request; False when this fault lets manifests through."""
        if fault == "forbidden":
            self.errors(403, "DENIED", "requested access to the resource is denied", send_body)
        elif fault == "ratelimit":
            self.errors(
                429,
                "TOOMANYREQUESTS",
                json.loads(HUB_429_BODY)["errors"][0]["message"],
                send_body,
                {
                    "ratelimit-limit": "100;w=21600",
                    "ratelimit-remaining": "0;w=21600",
                    "docker-ratelimit-source": "127.0.0.1",
                },
            )
        elif fault == "broken":
            self.errors(500, "UNKNOWN", "unknown error", send_body)
        elif fault == "badgateway":
            self.reply(
                502,
                {"Content-Type": "text/html"},
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                send_body=send_body,
            )
        elif fault in ("token-anonymous", "token-credentials"):
            challenge = (
                f'Bearer realm="http://{self.server.host}/token",service="fault-registry",'
                f'scope="repository:{fault}/app:pull"'
            )
            if "Authorization" not in self.headers:
                self.errors(401, "UNAUTHORIZED", "authentication required", send_body, {"WWW-Authenticate": challenge})
            else:  # pragma: no cover - the token endpoint never hands out a token
                self.errors(401, "UNAUTHORIZED", "authentication required", send_body)
        else:
            return False
        return True

    def blob_fault(self, fault: str, send_body: bool) -> bool:
        """Fail a blob request; False when this fault lets blobs through."""
        if fault == "ratelimit-blob":
            self.reply(
                429,
                {
                    "Content-Type": "application/json",
                    "ratelimit-limit": "100;w=21600",
                    "ratelimit-remaining": "0;w=21600",
                },
                HUB_429_BODY,
                send_body=send_body,
            )
        elif fault == "unavailable-blob":
            self.reply(503, {"Content-Type": "text/plain"}, b"Service Unavailable", send_body=send_body)
        else:
            return False
        return True

    def serve_content(self, kind: str, ref: str, send_body: bool) -> None:
        """Serve the tiny image."""
        image = self.server.image
        if kind == "manifests" and ref in ("1.0", image.digest):
            headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": image.digest}
            self.reply(200, headers, image.manifest, send_body=send_body)
        elif kind == "blobs" and ref in image.blobs:
            headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": ref}
            self.reply(200, headers, image.blobs[ref], send_body=send_body)
        else:
            self.errors(404, "MANIFEST_UNKNOWN" if kind == "manifests" else "BLOB_UNKNOWN", "unknown", send_body)


# ---------------------------------------------------------------------------------------------------------------
# A DNS server for containerd's resolver: NXDOMAIN, SERVFAIL, or silence


class DnsServer:
    """Answers every A/AAAA query on 127.0.0.1:53: SERVFAIL for servfail.*, nothing for silent.*, NXDOMAIN else."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, name="dns", daemon=True)

    def serve(self) -> None:
        """Answer until stopped."""
        while not self.stopping.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            if len(query) < 12:
                continue
            name = self.qname(query)
            if name.startswith("silent."):
                continue
            rcode = 2 if name.startswith("servfail.") else 3
            ident, flags = struct.unpack("!HH", query[:4])
            header = struct.pack("!HHHHHH", ident, 0x8000 | (flags & 0x0100) | 0x0080 | rcode, 1, 0, 0, 0)
            question_end = 12 + len(self.labels(query)) + 4
            self.sock.sendto(header + query[12:question_end], peer)

    @staticmethod
    def labels(query: bytes) -> bytes:
        """The encoded question name."""
        pos = 12
        while pos < len(query) and query[pos] != 0:
            pos += query[pos] + 1
        return query[12 : pos + 1]

    def qname(self, query: bytes) -> str:
        """The question name as text."""
        raw, parts, pos = self.labels(query), [], 0
        while pos < len(raw) and raw[pos] != 0:
            parts.append(raw[pos + 1 : pos + 1 + raw[pos]].decode("ascii", "replace"))
            pos += raw[pos] + 1
        return ".".join(parts).lower()

    def __enter__(self) -> DnsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        self.sock.close()


# ---------------------------------------------------------------------------------------------------------------
# containerd and its CRI


def containerd_version() -> str:
    """`containerd --version`'s version field, e.g. 1.6.20~ds1."""
    out = subprocess.run(["containerd", "--version"], check=True, capture_output=True, text=True).stdout.split()
    return out[2] if len(out) > 2 else "unknown"


def write_hosts_toml(certs_d: Path, host: str, server: str, ca: Path | None) -> None:
    """certs.d/HOST/hosts.toml sending host's pulls to server (with ca when given)."""
    folder = certs_d / host
    folder.mkdir(parents=True, exist_ok=True)
    ca_line = f'ca = "{ca}"\n' if ca else ""
    (folder / "hosts.toml").write_text(
        f'server = "{server}"\n{ca_line}\n[host."{server}"]\n  capabilities = ["pull", "resolve"]\n{ca_line}'
    )


def start_containerd(procs: Processes, work: Path, certs_d: Path) -> Path:
    """Start containerd as root in its own mount namespace; return its socket path."""
    root, state = work / "containerd-root", work / "containerd-state"
    content = root / "io.containerd.content.v1.content"
    content.mkdir(parents=True)
    state.mkdir()
    sock = work / "containerd.sock"
    config = work / "containerd.toml"
    config.write_text(
        f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{work / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{work / "cni-bin"}"
    conf_dir = "{work / "cni-conf"}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs_d}"
"""
    )
    resolv = work / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    # Own mount namespace: resolver -> our DNS server; content store on a 2 MiB tmpfs (real ENOSPC for big images).
    script = (
        f"mount --bind {resolv} /etc/resolv.conf && "
        f"mount -t tmpfs -o size=2m corpus-content {content} && "
        f"exec containerd --config {config}"
    )
    procs.start(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], work / "containerd.log")
    deadline = time.monotonic() + 30
    while not sock.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"containerd did not start; see {work / 'containerd.log'}")
        time.sleep(0.2)
    return sock


def load_cri(work: Path) -> tuple[ModuleType, ModuleType]:
    """Compile scripts/cri_api.proto into work and import the generated modules."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    out = work / "cri_gen"
    out.mkdir()
    shutil.copy(PROTO, out / "cri_api.proto")
    include = Path(importlib.import_module("grpc_tools").__file__ or "").parent / "_proto"
    args = ["protoc", f"-I{out}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", "cri_api.proto"]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on cri_api.proto")
    sys.path.insert(0, str(out))
    return importlib.import_module("cri_api_pb2"), importlib.import_module("cri_api_pb2_grpc")


@dataclass(frozen=True)
class Outcome:
    """What PullImage answered."""

    ok: bool
    code: str  # grpc-go spelling
    details: str

    def kubelet_error(self) -> str:
        """The error as grpc-go formats it, which is what kubelet prints with %v."""
        return f"rpc error: code = {self.code} desc = {self.details}"


class CriClient:
    """runtime.v1.ImageService over containerd's unix socket."""

    def __init__(self, sock: Path, pb2: ModuleType, pb2_grpc: ModuleType) -> None:
        import grpc

        self.grpc = grpc
        self.channel = grpc.insecure_channel(f"unix://{sock}")
        self.stub = pb2_grpc.ImageServiceStub(self.channel)
        self.pb2 = pb2

    def pull(self, image: str, auth: tuple[str, str] | None = None, timeout: float = 30.0) -> Outcome:
        """Call PullImage like kubelet does and return the outcome."""
        req = self.pb2.PullImageRequest(
            image=self.pb2.ImageSpec(image=image), sandbox_config=self.pb2.PodSandboxConfig()
        )
        if auth is not None:
            req.auth.CopyFrom(self.pb2.AuthConfig(username=auth[0], password=auth[1]))
        try:
            resp = self.stub.PullImage(req, timeout=timeout)
        except self.grpc.RpcError as err:
            code = GO_CODE_NAMES[err.code().name]
            details = err.details() or ""
            if err.code() is self.grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":
                # The deadline fired in this (Python) client. kubelet is a grpc-go client, whose status for its
                # own expired context reads "context deadline exceeded" (grpc-go toRPCErr); write that form.
                details = "context deadline exceeded"
            return Outcome(False, code, details)
        return Outcome(True, "OK", resp.image_ref)

    def wait_ready(self, image: str, timeout: float = 30.0) -> Outcome:
        """Retry a known-good pull until the CRI plugin answers."""
        deadline = time.monotonic() + timeout
        while True:
            outcome = self.pull(image, timeout=10)
            if outcome.ok or outcome.code not in ("Unavailable", "Unimplemented") or time.monotonic() > deadline:
                return outcome
            time.sleep(0.5)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


# ---------------------------------------------------------------------------------------------------------------
# The cases


@dataclass(frozen=True)
class Case:
    """One pull that must fail, and the contract cause its message names."""

    name: str
    image: str
    cause: str
    auth: tuple[str, str] | None = None
    timeout: float = 30.0
    note: str = ""


@dataclass
class Lab:
    """Everything the cases pull from."""

    plain: Registry
    basic: Registry
    tls_unknown: Registry
    tls_mismatch: Registry
    tls_expired: Registry
    fault: str
    refused: str
    localhost_plain: str


def build_lab(procs: Processes, work: Path, certs: Certs, certs_d: Path, fault: FaultRegistry) -> Lab:
    """Start the registries, push the images, write hosts.toml for every host."""
    htpasswd = work / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True)
    good_tls = (certs.good_cert, certs.good_key)
    plain = start_registry(procs, work, "plain", f"127.0.0.1:{free_port()}")
    basic = start_registry(procs, work, "basic", f"127.0.0.1:{free_port()}", htpasswd=htpasswd)
    tls_unknown = start_registry(procs, work, "tls", f"127.0.0.1:{free_port()}", tls=good_tls)
    tls_mismatch = start_registry(procs, work, "tls2", f"127.0.0.2:{free_port('127.0.0.2')}", tls=good_tls)
    tls_expired = start_registry(
        procs, work, "expired", f"127.0.0.1:{free_port()}", tls=(certs.expired_cert, certs.expired_key)
    )
    lab = Lab(
        plain=plain,
        basic=basic,
        tls_unknown=tls_unknown,
        tls_mismatch=tls_mismatch,
        tls_expired=tls_expired,
        fault=fault.host,
        refused=f"127.0.0.1:{free_port()}",
        localhost_plain="localhost:" + plain.host.rsplit(":", 1)[1],
    )
    tiny = build_image("amd64", b"tiny\n")  # not the fault registry's image: its blobs must not be cached
    push(plain, "tiny", "1.0", tiny)
    push(basic, "private/app", "1.0", tiny)
    push(basic, "private/other", "1.0", tiny)  # same 401 text as private/app: a second name keeps messages unique
    arm64 = build_image("arm64", b"arm64 only\n")
    push(plain, "armonly", "arm64-digest", arm64)
    Pusher(plain.base).put_manifest("armonly", "1.0", index_of({"arm64": arm64}), OCI_INDEX)
    gappy = build_image("amd64", b"this layer will be deleted\n")
    push(plain, "gappy", "1.0", gappy)
    status, _, _ = request(plain, "DELETE", f"/v2/gappy/blobs/{gappy.layer_digest}")
    if status != 202:
        raise RuntimeError(f"could not delete the layer of gappy: HTTP {status}")
    big = build_image("amd64", os.urandom(3 * 1024 * 1024))  # larger than containerd's 2 MiB content tmpfs
    push(plain, "big", "1.0", big)

    for reg in (plain, basic):
        write_hosts_toml(certs_d, reg.host, f"http://{reg.host}", None)
    write_hosts_toml(certs_d, tls_unknown.host, f"https://{tls_unknown.host}", None)
    write_hosts_toml(certs_d, tls_mismatch.host, f"https://{tls_mismatch.host}", certs.good_cert)
    write_hosts_toml(certs_d, tls_expired.host, f"https://{tls_expired.host}", certs.expired_cert)
    write_hosts_toml(certs_d, lab.fault, f"http://{lab.fault}", None)
    write_hosts_toml(certs_d, lab.refused, f"http://{lab.refused}", None)
    write_hosts_toml(certs_d, lab.localhost_plain, f"https://{lab.localhost_plain}", None)
    return lab


def cases(lab: Lab) -> list[Case]:
    """The failing pulls, each with the cause its message names (contract ids)."""
    p, b, f = lab.plain.host, lab.basic.host, lab.fault
    return [
        Case("unknown tag", f"{p}/tiny:2.0", "tag_not_found"),
        Case("unknown digest", f"{p}/tiny@sha256:{'0' * 64}", "tag_not_found"),
        # docker-registry answers MANIFEST_UNKNOWN for a missing repository too, so containerd says `not found`
        # exactly as for a missing tag: the text names tag_not_found; only a registry probe can tell them apart.
        Case("unknown repository", f"{p}/no-such-repo:1.0", "tag_not_found", note="repository is missing"),
        Case("401 without credentials", f"{b}/private/app:1.0", "auth_failed"),
        Case("401 with wrong credentials", f"{b}/private/other:1.0", "auth_failed", auth=(USER, "wrong-password")),
        Case("403 on the manifest", f"{f}/forbidden/app:1.0", "repo_not_found_or_no_access"),
        Case("anonymous token refused (403)", f"{f}/token-anonymous/app:1.0", "repo_not_found_or_no_access"),
        Case(
            "token refused for credentials (401)",
            f"{f}/token-credentials/app:1.0",
            "auth_failed",
            auth=(USER, "wrong-password"),
        ),
        Case("429 on the manifest", f"{f}/ratelimit/app:1.0", "rate_limited"),
        Case("429 on a blob", f"{f}/ratelimit-blob/app:1.0", "rate_limited"),
        Case("500 on the manifest", f"{f}/broken/app:1.0", "registry_server_error"),
        Case("502 on the manifest", f"{f}/badgateway/app:1.0", "registry_server_error"),
        Case("503 on a blob", f"{f}/unavailable-blob/app:1.0", "registry_server_error"),
        Case("TLS: unknown authority", f"{lab.tls_unknown.host}/tiny:1.0", "tls_cert"),
        Case("TLS: certificate for another address", f"{lab.tls_mismatch.host}/tiny:1.0", "tls_cert"),
        Case("TLS: expired certificate", f"{lab.tls_expired.host}/tiny:1.0", "tls_cert"),
        Case("TLS: plain HTTP server", f"{lab.localhost_plain}/tiny:1.0", "tls_cert"),
        Case("DNS: no such host", "registry.corpus.invalid/app:1.0", "dns_failure"),
        Case("DNS: server failure", "servfail.corpus.invalid/app:1.0", "dns_failure"),
        Case("DNS: resolver does not answer", "silent.corpus.invalid/app:1.0", "dns_failure"),
        Case("connection refused", f"{lab.refused}/app:1.0", "network_timeout"),
        Case("platform mismatch", f"{p}/armonly:1.0", "platform_mismatch"),
        Case("missing layer blob", f"{p}/gappy:1.0", "other"),
        Case("invalid reference (uppercase)", f"{p}/Tiny:1.0", "invalid_image_name"),
        Case("invalid reference (bad characters)", f"{p}/tiny:1.0:extra", "invalid_image_name"),
        Case("registry never answers (deadline)", f"{f}/hang/app:1.0", "network_timeout", timeout=5.0),
        Case("no space left for the content store", f"{p}/big:1.0", "disk_full"),
    ]


def run(out: Path, keep: bool) -> int:
    """Build the lab, run every case, write the corpus; returns an exit status."""
    if os.geteuid() != 0:
        print("containerd_corpus.py must run as root (containerd needs it)", file=sys.stderr)
        return 2
    for tool in ("containerd", "docker-registry", "htpasswd", "openssl", "unshare"):
        if shutil.which(tool) is None:
            print(f"missing tool: {tool}", file=sys.stderr)
            return 2
    version = containerd_version()
    source = f"containerd {version} CRI PullImage, scripts/containerd_corpus.py"
    work = Path(tempfile.mkdtemp(prefix="ctrd-corpus-"))
    procs = Processes()
    rows: list[dict[str, str]] = []
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(procs.stop_all)
            certs = make_certs(work / "certs")
            certs_d = work / "certs.d"
            fault = FaultRegistry(build_image("amd64", b"served by the fault registry\n"))
            threading.Thread(target=fault.serve_forever, name="fault-registry", daemon=True).start()
            stack.callback(fault.server_close)
            stack.callback(fault.shutdown)
            stack.callback(fault.stopping.set)
            stack.enter_context(DnsServer())
            lab = build_lab(procs, work, certs, certs_d, fault)
            sock = start_containerd(procs, work, certs_d)
            pb2, pb2_grpc = load_cri(work)
            client = CriClient(sock, pb2, pb2_grpc)
            stack.callback(client.close)
            for image, auth in (
                (f"{lab.plain.host}/tiny:1.0", None),
                (f"{lab.basic.host}/private/app:1.0", (USER, PASSWORD)),
            ):
                outcome = client.wait_ready(image) if auth is None else client.pull(image, auth=auth)
                if not outcome.ok:
                    raise RuntimeError(f"sanity pull of {image} failed: {outcome.kubelet_error()}")
                print(f"ok    sanity pull {image}")
            for case in cases(lab):
                outcome = client.pull(case.image, auth=case.auth, timeout=case.timeout)
                if outcome.ok:
                    raise RuntimeError(f"case {case.name!r}: {case.image} pulled successfully")
                message = f"Failed to pull image {go_quote(case.image)}: {outcome.kubelet_error()}"
                print(f"fail  {case.name}: {message}")
                rows.append(
                    {
                        "message": message,
                        "cause": case.cause,
                        "event_reason": "Failed",
                        "source": source,
                        "case": case.name,
                    }
                )
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} messages to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE.parent / "tests" / "corpus" / "containerd.jsonl")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) for debugging")
    args = parser.parse_args(argv)
    return run(args.out, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
