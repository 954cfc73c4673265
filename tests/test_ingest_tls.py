"""TLS and mutual TLS on both listeners of a real `llmtally serve`, with throwaway certificate authorities: the
OTLP exporters (gRPC and HTTP) configured by the standard environment variables export over TLS; a plaintext client,
a client that does not trust the server, and (with mTLS) a client without a certificate of the trusted CA are
refused; bad TLS settings stop `serve`."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter

from llmtally.exporter.config import Config, ConfigError
from llmtally.exporter.receive.tls import TLS
from receiver import Receiver, free_port
from test_ingest_auth import LOGS_METHOD, PROTOBUF, bearer, emit, service_logs, stored
from tls_certs import Authority, Pair

TOKEN = "tls-ingest-token-0123456789abcd"


@dataclass(frozen=True)
class PKI:
    ca: Authority
    server: Pair
    client: Pair
    rogue: Authority  # a CA the receiver does not trust
    rogue_client: Pair
    rogue_server: Pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca, rogue = Authority(directory, "ca"), Authority(directory, "rogue")
    return PKI(
        ca,
        ca.issue("server", server=True),
        ca.issue("client", server=False),
        rogue,
        rogue.issue("rogue-client", server=False),
        rogue.issue("rogue-server", server=True),
    )


def tls_receiver(tmp_path: Path, pki: PKI, *, mutual: bool) -> Receiver:
    tls = {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key)}
    if mutual:
        tls["client_ca_file"] = str(pki.ca.pair.cert)
    receiver = Receiver(
        tmp_path,
        f"sqlite:///{tmp_path}/audit.db",
        https=pki.ca.client_context(pki.client if mutual else None),
        receiver={"workers": 0, "tls": tls, "ingest_tokens": [{"name": "app", "token": TOKEN}]},
    )
    return receiver.start()


@pytest.fixture
def tls(tmp_path: Path, pki: PKI) -> Iterator[Receiver]:
    receiver = tls_receiver(tmp_path, pki, mutual=False)
    try:
        yield receiver
    finally:
        assert receiver.stop() == 0


@pytest.fixture
def mtls(tmp_path: Path, pki: PKI) -> Iterator[Receiver]:
    receiver = tls_receiver(tmp_path, pki, mutual=True)
    try:
        yield receiver
    finally:
        assert receiver.stop() == 0


def export_with_real_exporters(receiver: Receiver, monkeypatch: pytest.MonkeyPatch, pki: PKI, client: Pair | None):
    """Two events over gRPC and three over HTTP, each exporter configured as an app would be: the endpoint and the
    standard OTEL_EXPORTER_OTLP_* variables (CA, client certificate and key, the token in the headers)."""
    # requests (under the HTTP exporter) prefers these to the certificate it is given: a machine-wide CA bundle
    # would hide the exporter's own setting.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pki.ca.pair.cert))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{TOKEN}")
    if client is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(client.cert))
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", str(client.key))
    emit(GrpcLogExporter(endpoint=f"https://127.0.0.1:{receiver.grpc_port}"), "tls-grpc", 2)
    emit(HttpLogExporter(endpoint=f"{receiver.http_url}/v1/logs"), "tls-http", 3)


def grpc_refused(receiver: Receiver, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The status of a logs export with a valid token over a channel with `credentials` (None: plaintext)."""
    target = f"127.0.0.1:{receiver.grpc_port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel, pytest.raises(grpc.RpcError) as raised:
        call = channel.unary_unary(LOGS_METHOD)
        call(service_logs(("x", 1), start=500).SerializeToString(), metadata=tuple(bearer(TOKEN).items()), timeout=5)
    return raised.value.code()


def http_refused(receiver: Receiver, url: str, verify: ssl.SSLContext | bool) -> None:
    """A logs export with a valid token at `url` fails before any answer (no TLS session)."""
    with pytest.raises(httpx.TransportError):
        httpx.post(
            url,
            content=service_logs(("x", 1), start=600).SerializeToString(),
            headers=PROTOBUF | bearer(TOKEN),
            verify=verify,
            timeout=5,
        )


def roots(authority: Authority) -> bytes:
    return authority.pair.cert.read_bytes()


def test_tls_end_to_end_and_plaintext_or_untrusted_clients_refused(
    tls: Receiver, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_with_real_exporters(tls, monkeypatch, pki, client=None)
    assert sorted(r.service for r in stored(tls)) == ["tls-grpc"] * 2 + ["tls-http"] * 3

    assert grpc_refused(tls, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
    assert grpc_refused(tls, grpc.ssl_channel_credentials(roots(pki.rogue))) == grpc.StatusCode.UNAVAILABLE
    http_refused(tls, f"http://127.0.0.1:{tls.http_port}/v1/logs", True)  # plaintext
    http_refused(tls, f"{tls.http_url}/v1/logs", pki.rogue.client_context())  # the server is not trusted
    assert len(stored(tls)) == 5

    # TLS does not replace the token: a trusted TLS client without one is still refused.
    answer = httpx.post(f"{tls.http_url}/v1/logs", content=b"", headers=PROTOBUF, verify=pki.ca.client_context())
    assert answer.status_code == 401
    assert tls.get("/readyz").json() == {"status": "ready"}


def test_mutual_tls_needs_a_client_certificate_of_the_trusted_ca(
    mtls: Receiver, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_with_real_exporters(mtls, monkeypatch, pki, client=pki.client)
    assert len(stored(mtls)) == 5

    url = f"{mtls.http_url}/v1/logs"
    http_refused(mtls, url, pki.ca.client_context())  # no client certificate
    http_refused(mtls, url, pki.ca.client_context(pki.rogue_client))  # a certificate of another CA
    http_refused(mtls, f"http://127.0.0.1:{mtls.http_port}/v1/logs", True)  # plaintext
    with pytest.raises(httpx.TransportError):  # every path of the port needs it
        httpx.get(f"{mtls.http_url}/readyz", verify=pki.ca.client_context(), timeout=5)

    no_certificate = grpc.ssl_channel_credentials(roots(pki.ca))
    rogue = pki.rogue_client
    other_ca = grpc.ssl_channel_credentials(roots(pki.ca), rogue.key.read_bytes(), rogue.cert.read_bytes())
    assert grpc_refused(mtls, no_certificate) == grpc.StatusCode.UNAVAILABLE
    assert grpc_refused(mtls, other_ca) == grpc.StatusCode.UNAVAILABLE
    assert grpc_refused(mtls, None) == grpc.StatusCode.UNAVAILABLE
    assert len(stored(mtls)) == 5
    assert mtls.get("/readyz").json() == {"status": "ready"}  # with the client certificate


def test_bad_tls_settings_name_their_key(pki: PKI, tmp_path: Path) -> None:
    def settings(cert: Path | None, key: Path | None, ca: Path | None = None) -> Config:
        return Config(
            tls_cert_file=str(cert) if cert else None,
            tls_key_file=str(key) if key else None,
            tls_client_ca_file=str(ca) if ca else None,
        )

    assert TLS.from_config(Config()) is None
    assert TLS.from_config(settings(pki.server.cert, pki.server.key, pki.ca.pair.cert)) == TLS(
        str(pki.server.cert), str(pki.server.key), str(pki.ca.pair.cert)
    )
    cases = [
        (settings(pki.server.cert, None), "needs both cert_file and key_file"),
        (settings(None, None, pki.ca.pair.cert), "needs both cert_file and key_file"),
        (settings(tmp_path / "missing.crt", pki.server.key), r"receiver\.tls\.cert_file / key_file"),
        (settings(pki.server.cert, pki.rogue_server.key), r"receiver\.tls\.cert_file / key_file"),  # not its key
        (settings(pki.server.cert, pki.server.key, tmp_path / "missing-ca.crt"), r"receiver\.tls\.client_ca_file"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigError, match=message):
            TLS.from_config(config)

    # The flags reach the same check: serve stops with exit 2, naming it.
    command = [str(Path(sys.executable).with_name("llmtally")), "serve", "--store", f"sqlite:///{tmp_path}/a.db"]
    command += ["--otlp-grpc", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}"]
    command += ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.rogue_server.key)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMTALLY_", "OTEL_"))}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "receiver.tls.cert_file / key_file" in done.stderr, done.stderr
