"""`allied serve` as operators run it: a separate process on 127.0.0.1, with several workers,
over TLS and mutual TLS, with its access log on stderr."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from allied.taxii.protocol import MEDIA_TYPE
from tests.conftest import wait_listening
from tests.taxii.conftest import World

ALLIED = str(Path(sys.executable).parent / "allied")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    world: World, *args: str, scheme: str = "http", **client: object
) -> Iterator[tuple[str, Path]]:
    """``allied serve`` in its own process until the block ends; yields its URL and the file
    its stderr goes to."""
    port = free_port()
    log = world.directory.parent / f"serve-{port}.log"
    with open(log, "wb") as err:
        process = subprocess.Popen(
            [ALLIED, "--node", str(world.directory), "serve", "--port", str(port), *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "ALLIED_NODE": ""},
        )
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_listening(port, process, log)
        yield url, log
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(url: str, token: str, **client: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": MEDIA_TYPE}
    with httpx.Client(**client) as http:  # type: ignore[arg-type]
        return http.get(url, headers=headers, timeout=10)


def test_serve_with_workers_and_an_access_log(world: World) -> None:
    with serving(world, "--workers", "2") as (url, log):
        deadline = time.monotonic() + 30
        while True:  # the workers may still be starting
            try:
                response = get(f"{url}/taxii2/", world.tokens["usa"])
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json()["api_roots"] == [f"{url}/api/"]
        for _ in range(6):
            assert get(f"{url}/api/collections/", world.tokens["usa"]).status_code == 200
        assert get(f"{url}/api/", "wrong-token-of-sufficient-length").status_code == 401
        time.sleep(0.5)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert {(line["partner"], line["status"]) for line in lines} == {("usa", 200), (None, 401)}
    assert len(lines) == 8
    assert world.tokens["usa"] not in log.read_text()
    assert "wrong-token" not in log.read_text()


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all from the CA."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(
        name: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey,
        *,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if name == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    paths: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = issue("test CA", ca_key, ca_name, ca_key, ca=True)
    paths["ca"] = directory / "ca.pem"
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(name, key, ca_name, ca_key, ca=False)
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}-key"] = directory / f"{name}.key"
        paths[f"{name}-key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        paths[f"{name}-key"].chmod(0o600)
    return paths


def test_mutual_tls(world: World, tmp_path: Path) -> None:
    certs = _certificates(tmp_path)
    args = ["--tls-cert", str(certs["server"]), "--tls-key", str(certs["server-key"])]
    args += ["--client-ca", str(certs["ca"])]
    with serving(world, *args, scheme="https") as (url, _log):
        trusted = ssl.create_default_context(cafile=str(certs["ca"]))
        with_client = ssl.create_default_context(cafile=str(certs["ca"]))
        with_client.load_cert_chain(str(certs["client"]), str(certs["client-key"]))
        response = get(f"{url}/api/", world.tokens["usa"], verify=with_client)
        assert response.status_code == 200
        with pytest.raises((httpx.TransportError, ssl.SSLError)):
            get(f"{url}/api/", world.tokens["usa"], verify=trusted)  # no client certificate
        # the certificate is a second factor: the token is still required
        assert (
            get(f"{url}/api/", "nope-nope-nope-nope-nope-nope", verify=with_client).status_code
            == 401
        )


def test_tls_options_go_together(world: World) -> None:
    result = subprocess.run(
        [ALLIED, "--node", str(world.directory), "serve", "--tls-cert", "x.pem"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--tls-cert and --tls-key go together" in result.stderr
