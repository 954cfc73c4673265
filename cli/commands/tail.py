"""`llmtally tail`: the live feed of a running receiver (`GET /api/v1/requests/stream`), one line per request, resumed
after a dropped connection from the last event seen (`Last-Event-ID`), so none is lost or printed twice."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from llmtally.exporter.api.params import FILTERS

from .tables import count, millis, money, text

RETRY_S = 1.0
IDLE_S = 60.0  # no byte for this long (the receiver sends a heartbeat every stream.heartbeat_seconds): reconnect


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    from llmtally.exporter.config import load, split_address

    config = load(args.config)
    host, port = split_address(config.http, "receiver.http")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if config.tls_cert_file else 'http'}://{host}:{port}"


def events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, str]]:
    """(id, event, data) of each Server-Sent Event in `lines`; comments and the retry field are skipped."""
    event_id: str | None = None
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event_id, name, "\n".join(data)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            event_id = value
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)


def _line(row: dict[str, object]) -> str:
    return "  ".join(
        (
            text(row.get("timestamp")),
            text(row.get("provider")),
            text(row.get("model")),
            f"user={text(row.get('user'))}",
            text(row.get("status")) + (f" {row['http_status']}" if row.get("http_status") else ""),
            f"in={count(row.get('input_tokens'))} out={count(row.get('output_tokens'))}",
            money(row.get("customer_cost_usd")),
            millis(row.get("latency_ms")),
            text(row.get("id")),
        )
    )


def _lines(response: Any) -> Iterator[str]:
    for raw in response:
        yield raw.decode("utf-8").rstrip("\r\n")


def tail(args: argparse.Namespace) -> int:
    filters = {name: getattr(args, f"filter_{name}") for name in FILTERS if getattr(args, f"filter_{name}")}
    if args.status:
        filters["status"] = args.status
    url = f"{_base_url(args)}/api/v1/requests/stream?{urllib.parse.urlencode(filters)}"
    token = args.token or os.environ.get("LLMTALLY_API_TOKEN")
    headers = {"Accept": "text/event-stream", **({"Authorization": f"Bearer {token}"} if token else {})}
    last: str | None = None
    printed = 0
    while args.count is None or printed < args.count:
        request = urllib.request.Request(url, headers={**headers, **({"Last-Event-ID": last} if last else {})})
        try:
            with urllib.request.urlopen(request, timeout=IDLE_S) as response:
                print(f"llmtally tail: following {url}", file=sys.stderr, flush=True)
                for event_id, name, data in events(_lines(response)):
                    if name != "request":
                        continue
                    row = json.loads(data)
                    print(json.dumps(row, ensure_ascii=False) if args.json else _line(row), flush=True)
                    last = event_id or last
                    printed += 1
                    if args.count is not None and printed >= args.count:
                        return 0
            print("llmtally tail: the receiver ended the stream; reconnecting", file=sys.stderr, flush=True)
        except urllib.error.HTTPError as error:
            if error.code == 503:
                time.sleep(float(error.headers.get("Retry-After") or RETRY_S))
                continue
            print(f"llmtally tail: {error.code} {error.read().decode(errors='replace')}", file=sys.stderr)
            return 2 if error.code == 400 else 1
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out, cut short
            print(f"llmtally tail: {error or type(error).__name__}; reconnecting", file=sys.stderr, flush=True)
        time.sleep(RETRY_S)
    return 0
