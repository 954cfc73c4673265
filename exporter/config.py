"""`llmtally.yaml`, the environment and command-line flags -> one `Config` (flags win, then the environment)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FILE = "llmtally.yaml"
DEFAULT_STORE = "sqlite:///llmtally.db"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Config:
    store: str = DEFAULT_STORE
    otlp_grpc: str = "127.0.0.1:4317"
    http: str = "127.0.0.1:4318"
    queue_records: int = 100_000
    ack_timeout_seconds: float = 30.0
    retry_after_seconds: float = 5.0
    max_request_bytes: int = 8 * 1024 * 1024  # an OTLP body or gRPC message, as sent and inflated
    max_concurrent_grpc_requests: int = 8  # export calls taken at once; past them RESOURCE_EXHAUSTED + RetryInfo
    max_concurrent_http_requests: int = 8  # OTLP/HTTP requests taken at once; past them 429 + Retry-After
    workers: int | None = None  # decoding / pricing processes; None: one per CPU, 0: none (in the receiving threads)
    max_series: int = 10_000
    pricing: Mapping[str, Any] = field(default_factory=dict)
    api_tokens: tuple[Mapping[str, Any], ...] = ()
    ingest_tokens: tuple[Mapping[str, Any], ...] = ()  # receiver.ingest_tokens (checked by receive.credentials)
    tls_cert_file: str | None = None  # receiver.tls: both listeners (checked by receive.tls)
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    retention_days: int | None = None
    retention_payload_days: int | None = None
    retention_interval_seconds: float = 3600.0
    budgets: Any = None  # the raw budgets:, credits: and alerts: sections (checked by budgets.config)
    credits: Any = None
    alerts: Any = None
    dimensions: Any = None  # the raw dimensions: section (checked by exporter/dimensions.py)
    reports: Any = None  # the raw reports: section (checked by reports.config)
    timezone: str = "UTC"  # week and month buckets of the reports (checked by api.settings)
    health: Any = None  # the raw health: section (checked by api.settings)
    reload_poll_seconds: float = 1.0  # how often serve checks llmtally.yaml for changes; 0: only on SIGHUP
    stream_max_clients: int = 16  # stream: the live feed (/api/v1/requests/stream), checked by api.feed
    stream_client_buffer_records: int = 1000
    stream_poll_seconds: float = 0.5
    stream_heartbeat_seconds: float = 15.0
    path: str | None = None


# yaml section -> {key: (Config field, type)}
_SECTIONS: dict[str, dict[str, tuple[str, type]]] = {
    "receiver": {
        "otlp_grpc": ("otlp_grpc", str),
        "http": ("http", str),
        "queue_records": ("queue_records", int),
        "ack_timeout_seconds": ("ack_timeout_seconds", float),
        "retry_after_seconds": ("retry_after_seconds", float),
        "max_request_bytes": ("max_request_bytes", int),
        "max_concurrent_grpc_requests": ("max_concurrent_grpc_requests", int),
        "max_concurrent_http_requests": ("max_concurrent_http_requests", int),
        "workers": ("workers", int),
    },
    "receiver.tls": {
        "cert_file": ("tls_cert_file", str),
        "key_file": ("tls_key_file", str),
        "client_ca_file": ("tls_client_ca_file", str),
    },
    "metrics": {"max_series": ("max_series", int)},
    "retention": {
        "days": ("retention_days", int),
        "payload_days": ("retention_payload_days", int),
        "interval_seconds": ("retention_interval_seconds", float),
    },
    "reload": {"poll_seconds": ("reload_poll_seconds", float)},
    "stream": {
        "max_clients": ("stream_max_clients", int),
        "client_buffer_records": ("stream_client_buffer_records", int),
        "poll_seconds": ("stream_poll_seconds", float),
        "heartbeat_seconds": ("stream_heartbeat_seconds", float),
    },
}
_LISTS = {"receiver.ingest_tokens": "ingest_tokens"}  # lists of mappings, checked where they are used
_TOP = {"store", "receiver", "metrics", "pricing", "api", "retention", "budgets", "credits", "alerts"}
_TOP |= {"timezone", "health", "dimensions", "reports"}
_TOP |= {"reload", "stream"}  # configuration reload; the live feed


def load(path: str | None = None, *, env: Mapping[str, str] | None = None, **flags: str | int | None) -> Config:
    """The configuration: `path` (or `$LLMTALLY_CONFIG`, or ./llmtally.yaml if present), then `LLMTALLY_STORE`,
    then `flags` (store, otlp_grpc, http, workers, tls_cert_file, tls_key_file, tls_client_ca_file) that are not
    None."""
    env = os.environ if env is None else env
    path = path or env.get("LLMTALLY_CONFIG") or (DEFAULT_FILE if Path(DEFAULT_FILE).is_file() else None)
    values: dict[str, Any] = {}
    if path:
        values.update(_read(path))
        values["path"] = path
    if env.get("LLMTALLY_STORE"):
        values["store"] = env["LLMTALLY_STORE"]
    values.update({k: v for k, v in flags.items() if v is not None})
    config = Config(**values)
    for name in ("otlp_grpc", "http"):
        split_address(getattr(config, name), name)
    for name in ("max_request_bytes", "max_concurrent_grpc_requests", "max_concurrent_http_requests"):
        if getattr(config, name) < 1:
            raise ConfigError(f"receiver.{name} must be at least 1")
    return config


def _read(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    unknown = set(data) - _TOP
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_TOP))})")
    values: dict[str, Any] = {}
    if "store" in data:
        values["store"] = _typed(data["store"], str, "store")
    for section, keys in _SECTIONS.items():
        parent, _, child = section.partition(".")
        given = (data.get(parent) or {}).get(child) if child else data.get(parent)
        given = given or {}
        if not isinstance(given, dict):
            raise ConfigError(f"{path}: {section} must be a mapping")
        nested = {name.rpartition(".")[2] for name in (*_SECTIONS, *_LISTS) if name.rpartition(".")[0] == section}
        for key, item in given.items():
            if key in nested:
                continue
            if key not in keys:
                known = ", ".join(sorted({*keys, *nested}))
                raise ConfigError(f"{path}: unknown key {section}.{key} (known: {known})")
            name, kind = keys[key]
            values[name] = _typed(item, kind, f"{section}.{key}")
    api = data.get("api") or {}
    if not isinstance(api, dict) or set(api) - {"tokens"}:
        raise ConfigError(f"{path}: api must be a mapping with the key tokens")
    tokens = api.get("tokens") or []
    if not isinstance(tokens, list):
        raise ConfigError(f"{path}: api.tokens must be a list")
    values["api_tokens"] = tuple(tokens)
    for dotted, name in _LISTS.items():
        parent, _, child = dotted.partition(".")
        items = (data.get(parent) or {}).get(child) or []
        if not isinstance(items, list):
            raise ConfigError(f"{path}: {dotted} must be a list")
        values[name] = tuple(items)
    pricing = data.get("pricing") or {}
    if not isinstance(pricing, dict):
        raise ConfigError(f"{path}: pricing must be a mapping")
    values["pricing"] = pricing
    values.update({k: data[k] for k in ("budgets", "credits", "alerts") if data.get(k) is not None})
    if data.get("dimensions") is not None:
        values["dimensions"] = data["dimensions"]
    if data.get("reports") is not None:
        values["reports"] = data["reports"]
    values.update({k: data[k] for k in ("timezone", "health") if data.get(k) is not None})
    return values


_KINDS = {int: "an integer", float: "a number", str: "a string"}


def _typed(item: Any, kind: type, key: str) -> Any:
    if kind is float and isinstance(item, int) and not isinstance(item, bool):
        return float(item)
    if not isinstance(item, kind) or isinstance(item, bool):
        raise ConfigError(f"{key} must be {_KINDS[kind]}, not {item!r}")
    if isinstance(item, (int, float)) and item < 0:
        raise ConfigError(f"{key} must not be negative")
    return item


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_address(address: str, key: str = "address") -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{key} must be HOST:PORT, not {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def checked_mapping(value: Any, key: str, known: frozenset[str], required: tuple[str, ...] = ()) -> Mapping[str, Any]:
    """A section's mapping at `key`, with only `known` keys and every `required` one (ConfigError naming the key)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping")
    unknown = sorted(set(map(str, value)) - known)
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    missing = [name for name in required if name not in value]
    if missing:
        raise ConfigError(f"{key}.{missing[0]} is required")
    return value


def checked_text(value: Any, key: str) -> str:
    """A non-empty string at `key` (ConfigError naming the key)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, not {value!r}")
    return value
