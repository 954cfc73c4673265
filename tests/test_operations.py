"""Operations on a running `llmtally serve` with real instrumented traffic, on SQLite and PostgreSQL: forgetting a
user (API and CLI) erases them from their records and keeps every total, their share under no user; reprice,
cleanup and forget land in the operations log, read through the API (admins only) and `llmtally operations`."""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from instrumented_app import APP_CALLS, run_instrumented_app
from llmtally.cli import main
from llmtally.exporter.maintenance.logged import logged
from llmtally.exporter.maintenance.retention import Scheduler
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import Store, open_store
from receiver import Receiver
from test_store import make

DAY = 86_400 * 10**9
ALL_TIME = (0, 2**62)
ADMIN = "admin-token-0123456789abcdef"
ALICE = "alice-token-0123456789abcdef"
TOKENS = [
    {"name": "ops", "role": "admin", "token": ADMIN},
    {"name": "alice", "role": "member", "user": "alice", "token_sha256": hashlib.sha256(ALICE.encode()).hexdigest()},
]
SUMS = ("requests", "input_tokens", "output_tokens", "provider_cost_nusd", "customer_cost_nusd")


@dataclass
class Served:
    receiver: Receiver
    url: str
    workdir: Path

    def call(self, method: str, path: str, token: str | None = ADMIN, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, f"{self.receiver.http_url}{path}", params=params, headers=headers, timeout=30)

    def ok(self, method: str, path: str, **params: Any) -> Any:
        response = self.call(method, path, **params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def served(store_url: str, provider: Any, tmp_path: Path) -> Iterator[Served]:
    """A receiver with API tokens and the example app's requests (users alice, bob, carol) stored through it."""
    receiver = Receiver(tmp_path, store_url, api={"tokens": TOKENS}).start()
    try:
        run_instrumented_app(provider.base_url, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint)
        yield Served(receiver, store_url, tmp_path)
    finally:
        assert receiver.stop() == 0
    assert "Traceback" not in receiver.log.read_text()


def records_of(url: str) -> list[Record]:
    with open_store(url) as store:
        return store.records_between(*ALL_TIME, limit=1000)


def sums(rows: list[dict[str, Any]], *key: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    out: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        k = tuple(row[g] for g in key)
        before = out.get(k, (0,) * len(SUMS))
        out[k] = tuple(b + int(row[s]) for b, s in zip(before, SUMS, strict=True))
    return out


def rollups(store: Store, *group_by: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The sums of the rollups read by `group_by` (each grouping reads its own family, hourly or daily)."""
    return sums(store.usage(list(group_by), *ALL_TIME), *group_by)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_forget_keeps_totals_and_every_operation_is_logged(served: Served, capsys: pytest.CaptureFixture[str]):
    url = served.url
    stored = records_of(url)
    assert len(stored) == APP_CALLS
    by_user = {u: [r for r in stored if r.user_id == u] for u in ("alice", "bob", "carol")}
    assert all(by_user.values()), {u: len(v) for u, v in by_user.items()}
    with open_store(url) as store:
        before = {g: rollups(store, *g) for g in (("hour",), ("day",), ("request_model", "day"), ("user_id", "hour"))}
    bob_cost = sum(r.customer_cost_nusd or 0 for r in by_user["bob"])
    bob_payloads = sum(r.input_messages is not None or r.output_messages is not None for r in by_user["bob"])

    # Admins only; a member, no token or a bad user are refused, and change nothing.
    assert served.call("POST", "/api/v1/forget", ALICE, user="alice").status_code == 403
    assert served.call("POST", "/api/v1/forget", None, user="bob").status_code == 401
    assert served.call("POST", "/api/v1/forget", user="").status_code == 400
    dry = served.ok("POST", "/api/v1/forget", user="bob", dry_run="true")
    assert dry == {
        "user": "bob",
        "dry_run": True,
        "records": len(by_user["bob"]),
        "payloads": bob_payloads,
        "provider_cost_nusd": sum(r.provider_cost_nusd or 0 for r in by_user["bob"]),
        "customer_cost_nusd": bob_cost,
    }
    assert sum(r.user_id == "bob" for r in records_of(url)) == len(by_user["bob"])

    done = served.ok("POST", "/api/v1/forget", user="bob")
    assert done["records"] == len(by_user["bob"]) and done["dry_run"] is False
    left = {r.record_id: r for r in records_of(url)}
    assert len(left) == APP_CALLS and not any(r.user_id == "bob" for r in left.values())
    for r in by_user["bob"]:  # erased of him: no user, payloads, source address or error message; counted still
        erased = left[r.record_id]
        assert (erased.user_id, erased.input_messages, erased.output_messages, erased.source_ip) == (None,) * 4
        assert erased.error_message is None and erased.customer_cost_nusd == r.customer_cost_nusd
    log = served.ok("GET", "/api/v1/requests", user="bob", range="24h")
    assert log["requests"] == []
    # The API's totals are the same; by user, bob's share is now under no user.
    usage = served.ok("GET", "/api/v1/usage", range="24h", group_by="user")
    shares = {row["user"]: row["customer_cost_nusd"] for row in usage["rows"]}
    assert "bob" not in shares
    assert shares[""] == bob_cost + sum(r.customer_cost_nusd or 0 for r in stored if r.user_id is None)
    assert usage["totals"]["customer_cost_nusd"] == sum(r.customer_cost_nusd or 0 for r in stored)

    # Forgetting through the command, beside the running receiver.
    carol = run_cli(capsys, "forget", "--store", url, "--user", "carol")
    assert carol["records"] == len(by_user["carol"])
    with open_store(url) as store:
        after = {g: rollups(store, *g) for g in before}
    for grouping, was in before.items():
        if "user_id" not in grouping:
            assert after[grouping] == was, grouping  # hourly, daily, by model: unchanged
    moved = {k[1:]: v for k, v in after[("user_id", "hour")].items() if k[0] == ""}
    gone = {k for k in after[("user_id", "hour")] if k[0] in ("bob", "carol")}
    assert not gone
    for hour, total in moved.items():
        want = [v for k, v in before[("user_id", "hour")].items() if k[1:] == hour and k[0] in ("", "bob", "carol")]
        assert total == tuple(map(sum, zip(*want, strict=True))), hour

    # A reprice after the forget changes totals by alice's records only: the forgotten share stays.
    config = served.workdir / "reprice.yaml"
    config.write_text(
        f"store: {url}\npricing:\n  overrides:\n    - model: gpt-4o-mini*\n      input_per_mtok: 1000\n"
        "      output_per_mtok: 2000\n"
    )
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86_400))
    repriced = run_cli(capsys, "reprice", "--config", str(config), "--since", today)
    alice_after = {r.record_id: r for r in records_of(url) if r.user_id == "alice"}
    changed = [r for r in by_user["alice"] if alice_after[r.record_id].provider_cost_nusd != r.provider_cost_nusd]
    assert repriced["changed"] == len(changed) > 0
    delta = sum((alice_after[r.record_id].provider_cost_nusd or 0) - (r.provider_cost_nusd or 0) for r in changed)
    with open_store(url) as store:
        for grouping in (("hour",), ("day",)):
            total = sum(v[3] for v in rollups(store, *grouping).values())
            assert total == sum(v[3] for v in before[grouping].values()) + delta, grouping

    cleanup = run_cli(capsys, "cleanup", "--store", url, "--days", "30", "--dry-run")
    assert cleanup["records"] == 0

    # The log, newest first, through the API (admins only) and the command.
    assert served.call("GET", "/api/v1/operations", ALICE).status_code == 403
    entries = served.ok("GET", "/api/v1/operations")["operations"]
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert [(e["kind"], e["actor"], e["outcome"]) for e in entries] == [
        ("cleanup", me, "dry_run"),
        ("reprice", me, "done"),
        ("forget", me, "done"),
        ("forget", "ops", "done"),
        ("forget", "ops", "dry_run"),
    ]
    assert entries[2]["arguments"] == {"user": "carol", "dry_run": False}
    assert entries[2]["counts"]["records"] == len(by_user["carol"])
    assert entries[3]["counts"]["customer_cost_nusd"] == bob_cost
    assert entries[1]["counts"] == {"days": repriced["days"], "changed": repriced["changed"]}
    assert entries[1]["arguments"]["since"].startswith(today)
    assert all(e["time"].endswith("Z") for e in entries) and entries[0]["id"] > entries[-1]["id"]
    assert run_cli(capsys, "operations", "--store", url) == entries
    forgets = served.ok("GET", "/api/v1/operations", kind="forget", limit=2)
    assert [e["id"] for e in forgets["operations"]] == [entries[2]["id"], entries[3]["id"]]
    older = served.ok("GET", "/api/v1/operations", kind="forget", before=forgets["next_before"])
    assert [e["id"] for e in older["operations"]] == [entries[4]["id"]] and older["next_before"] is None
    assert served.call("GET", "/api/v1/operations", kind="vacuum").status_code == 400


def test_failures_and_serves_retention_are_logged(store_url: str):
    with open_store(store_url) as store:
        with pytest.raises(RuntimeError, match="disk on fire"), logged(store, "reprice", "me@here", {"since": "x"}):
            raise RuntimeError("disk on fire")
        now = time.time_ns()
        store.write([make(i, start_ns=now - (5 + i) * DAY, user_id="dave") for i in range(3)])
        assert Scheduler(store, days=2, payload_days=None, interval_s=3600).run_once() == (3, 0)
        assert Scheduler(store, days=2, payload_days=None, interval_s=3600).run_once() == (0, 0)  # not logged
        first, second = store.operations()
    assert (first.kind, first.actor, first.outcome, dict(first.counts)) == (
        "cleanup",
        "serve",
        "done",
        {"records": 3, "payloads": 0},
    )
    assert (second.kind, second.outcome, second.message) == ("reprice", "failed", "disk on fire")
