"""Certificates for the simulated API server: a self-signed CA and a serving certificate for 127.0.0.1/localhost.

A real API server serves HTTPS only, and clients behave differently over plain HTTP: kubectl (client-go's
`rest.TLSConfigFor`/`transport.HTTPWrappersForConfig`) sends no bearer token to an `http://` server unless told to
(seen here; client-go refuses to send credentials over an insecure transport since kubernetes#91445). So the
simulator serves HTTPS with a CA that the written kubeconfig carries as `certificate-authority-data`, exactly as
`kubeadm` writes `admin.conf`.

Keys are ECDSA P-256 (instant to generate, accepted by Go's crypto/tls and by Python's ssl). The `cryptography`
package makes them; without it the `openssl` command does. One CA and serving pair per process is enough: every
simulator of a test session listens on 127.0.0.1 and the certificate does not name a port.
"""

from __future__ import annotations

import datetime
import functools
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ServingCerts:
    """PEM files of the CA and of the serving certificate (with its key), kept in a private temporary directory."""

    directory: Path
    ca_pem: bytes

    @property
    def ca_file(self) -> Path:
        """The CA certificate (what a client trusts)."""
        return self.directory / "ca.crt"

    @property
    def cert_file(self) -> Path:
        """The serving certificate (SANs 127.0.0.1, ::1, localhost)."""
        return self.directory / "apiserver.crt"

    @property
    def key_file(self) -> Path:
        """The serving certificate's private key."""
        return self.directory / "apiserver.key"

    def server_context(self) -> ssl.SSLContext:
        """The TLS context the server listens with."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this CA (for raw HTTP calls in tests)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


@functools.cache
def serving_certs() -> ServingCerts:
    """The process's CA and serving certificate, made on first use."""
    directory = Path(tempfile.mkdtemp(prefix="sim-apiserver-tls-"))
    directory.chmod(0o700)
    try:
        _with_cryptography(directory)
    except ImportError:
        _with_openssl(directory)
    return ServingCerts(directory, (directory / "ca.crt").read_bytes())


def _with_cryptography(directory: Path) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(hours=1)
    not_after = now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-sim-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "apiserver.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "apiserver.key"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)


def _with_openssl(directory: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the simulated API server needs the `cryptography` package or the `openssl` command")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=directory, timeout=30)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=kubernetes-sim-ca")
    run("req", *ec, "-keyout", "apiserver.key", "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver")
    (directory / "ext.cnf").write_text(
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:::1\n"
    )
    run(
        "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "apiserver.crt", "-days", "2", "-extfile", "ext.cnf",
    )  # fmt: skip
    (directory / "apiserver.key").chmod(0o600)
