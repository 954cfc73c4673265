"""TLS on both listeners (`receiver.tls` in `llmtally.yaml`, or `--tls-cert`, `--tls-key`, `--tls-client-ca`).

One certificate and key serve OTLP/gRPC (`grpc.ssl_server_credentials`) and the HTTP port (uvicorn's ssl options).
With `client_ca_file`, both require a client certificate signed by that CA (mutual TLS): a client without one
cannot complete the handshake, on every path of the HTTP port (`/metrics` and `/readyz` included).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from ..config import Config, ConfigError

KEY = "receiver.tls"


@dataclass(frozen=True)
class TLS:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> TLS | None:
        """The TLS settings, loaded once to check them (files readable, key matching the certificate); None when
        TLS is off. Raises ConfigError naming the key at fault."""
        cert, key, client_ca = config.tls_cert_file, config.tls_key_file, config.tls_client_ca_file
        if not (cert or key or client_ca):
            return None
        if not (cert and key):
            raise ConfigError(f"{KEY} needs both cert_file and key_file (client_ca_file alone is not enough)")
        tls = cls(cert, key, client_ca)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"{KEY}.cert_file / key_file ({cert}, {key}) cannot be used: {error}") from error
        if client_ca:
            try:
                context.load_verify_locations(client_ca)
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(f"{KEY}.client_ca_file ({client_ca}) cannot be used: {error}") from error
        return tls

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """For `grpc.Server.add_secure_port`."""
        root = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes())],
            root_certificates=root,
            require_client_auth=self.mutual,
        )

    def uvicorn_options(self) -> dict[str, Any]:
        """For `uvicorn.Config`."""
        return {
            "ssl_certfile": self.cert_file,
            "ssl_keyfile": self.key_file,
            "ssl_ca_certs": self.client_ca_file,
            "ssl_cert_reqs": ssl.CERT_REQUIRED if self.mutual else ssl.CERT_NONE,
        }

    def describe(self) -> str:
        return "TLS with client certificates (mTLS)" if self.mutual else "TLS"
