"""Who may write: ingest tokens (`receiver.ingest_tokens` in `llmtally.yaml`), each optionally limited to the
`service.name`s it may write for.

Apps send a token with the standard `OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>`, a collector with
its OTLP exporter's `headers`. A request without a valid token is refused whole (gRPC UNAUTHENTICATED, HTTP 401:
OTLP exporters do not retry either); the records of a service the token may not write for are rejected through
OTLP partial success, the others stored. Without ingest tokens anyone who can connect may write, so `serve` then
listens on loopback only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, is_loopback, split_address
from ..normalise.otlp import Normalised
from ..tokens import Token, TokenConfigError, find, parse

KEY = "receiver.ingest_tokens"
CHALLENGE = "Bearer"  # the WWW-Authenticate of a 401


class Unauthenticated(Exception):
    """No valid ingest token: the request is refused whole."""


@dataclass(frozen=True)
class Sender:
    """Who sent a request: a named ingest token, and the services it may write for (None: any)."""

    name: str
    services: frozenset[str] | None = None

    def screen(self, found: Normalised) -> None:
        """Rejects (OTLP partial success, with the reason) the records of services this sender may not write for."""
        if self.services is None:
            return
        allowed = ", ".join(sorted(self.services))
        kept = []
        for record in found.records:
            if record.service in self.services:
                kept.append(record)
            else:
                found.reject(
                    f"record {record.record_id}: ingest token {self.name!r} may not write for service "
                    f"{record.service!r} (only {allowed})"
                )
        found.records = kept


ANYONE = Sender("anyone")  # who writes when no ingest tokens are configured (loopback only)


def _sender(entry: Mapping[str, Any], where: str, index: int) -> Sender:
    services = entry.get("services")
    if services is not None and not (
        isinstance(services, list) and services and all(isinstance(s, str) and s for s in services)
    ):
        raise TokenConfigError(f"{where}.services must be a non-empty list of service.name values")
    return Sender(str(entry.get("name") or f"ingest{index}"), None if services is None else frozenset(services))


class Senders:
    """The ingest tokens; with none, everyone may write (and `serve` listens on loopback only)."""

    def __init__(self, tokens: Sequence[Token[Sender]] = ()) -> None:
        self.tokens = list(tokens)

    @classmethod
    def parse(cls, entries: Sequence[Mapping[str, Any]]) -> Senders:
        """`receiver.ingest_tokens` entries: each name, token or token_sha256, and optionally services."""
        return cls(parse(entries, KEY, ("name", "services"), _sender))

    @property
    def required(self) -> bool:
        return bool(self.tokens)

    def sender(self, authorization: str | None) -> Sender:
        """Who presents the `Authorization` value (gRPC metadata or HTTP header); raises Unauthenticated."""
        if not self.tokens:
            return ANYONE
        found = find(authorization, self.tokens)
        if found is None:
            raise Unauthenticated(
                "a valid ingest token is required (authorization: Bearer <token>, e.g. "
                "OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>)"
            )
        return found

    def check_listeners(self, listeners: Mapping[str, str]) -> None:
        """Refuses (ConfigError) to listen off loopback without ingest tokens; `listeners`: key -> HOST:PORT."""
        if self.required:
            return
        exposed = [
            f"{address} ({key})" for key, address in listeners.items() if not is_loopback(split_address(address)[0])
        ]
        if exposed:
            raise ConfigError(
                f"refusing to accept OTLP on {', '.join(exposed)} without ingest tokens: anyone who can reach it "
                f"could write records and move spend and budgets. Configure {KEY} in llmtally.yaml (apps send "
                "OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>), or listen on 127.0.0.1"
            )
