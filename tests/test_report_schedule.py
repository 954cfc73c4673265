"""Scheduled reports (`reports:` in llmtally.yaml) on SQLite and PostgreSQL: the schedule with an injected clock, a
missed run caught up after a restart, deliveries to a directory, to a real HTTP server (retries, timeout) and by
e-mail to a real SMTP server (aiosmtpd), failed deliveries retried later, two schedulers on one database delivering
once, and the scheduler running inside `llmtally serve`."""

from __future__ import annotations

import base64
import email
import io
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pypdf
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from test_api import record, write
from test_statements import ALL, OCTOBER, PRICING, expected

from llmtally.exporter.config import ConfigError, load
from llmtally.exporter.price import Pricer, PricingConfig
from llmtally.exporter.reports.config import parse
from llmtally.exporter.reports.render import dollars
from llmtally.exporter.reports.schedule import due_period, latest_fire
from llmtally.exporter.reports.scheduler import ReportScheduler
from llmtally.exporter.store import ReportRun, Store, open_store
from pg_server import PostgresServer
from receiver import Receiver, free_port
from tls_certs import Authority

HOUR = 3_600_000_000_000


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Clock:
    """An injected clock: the time the scheduler sees."""

    def __init__(self, now: str) -> None:
        self.now = at(now)

    def __call__(self) -> datetime:
        return self.now


# --- a real HTTP server for webhooks -----------------------------------------------------------------------------


class Hook:
    """A webhook receiver on 127.0.0.1: answers `fail` POSTs with 500 first, each after `delay` seconds."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail = 0
        self.delay = 0.0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                hook.attempts += 1
                time.sleep(hook.delay)
                if hook.fail > 0:
                    hook.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                hook.bodies.append({"json": json.loads(data), "headers": dict(self.headers)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    try:
        yield server
    finally:
        server.close()


# --- a real SMTP server ------------------------------------------------------------------------------------------


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


# --- the store, the scheduler ------------------------------------------------------------------------------------


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    write(store_url, ALL)
    with open_store(store_url) as opened:
        yield opened


def scheduler(
    store: Store, reports: list[dict[str, Any]], clock: Clock, logs: list[str] | None = None
) -> ReportScheduler:
    return ReportScheduler(
        store,
        Pricer(PricingConfig.from_dict(PRICING)),
        parse(reports),
        clock=clock,
        backoff_seconds=0.01,
        log=(logs.append if logs is not None else lambda _: None),
    )


def monthly(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "chargeback",
        "schedule": "monthly",
        "day": 1,
        "at": "06:00",
        "by": "department",
        "formats": ["csv", "json", "pdf"],
        "deliver": {"directory": str(tmp_path / "out"), **extra},
    }


# --- tests -------------------------------------------------------------------------------------------------------


def test_scheduled_times() -> None:
    reports = {
        r.name: r
        for r in parse(
            [
                {"name": "m", "schedule": "monthly", "day": 3, "at": "06:30", "deliver": {"directory": "x"}},
                {"name": "w", "schedule": "weekly", "day": "friday", "at": "07:00", "deliver": {"directory": "x"}},
                {"name": "d", "schedule": "daily", "at": "01:00", "deliver": {"directory": "x"}},
                {"name": "c", "schedule": "15 */6 * * *", "period": "previous_week", "deliver": {"directory": "x"}},
            ]
        )
    }
    cases = [
        ("m", "2026-11-03T06:29:59", "2026-10-03T06:30:00"),
        ("m", "2026-11-03T06:30:00", "2026-11-03T06:30:00"),
        ("m", "2026-01-02T00:00:00", "2025-12-03T06:30:00"),
        ("w", "2026-11-06T07:00:00", "2026-11-06T07:00:00"),  # a Friday
        ("w", "2026-11-06T06:59:00", "2026-10-30T07:00:00"),
        ("w", "2026-11-09T12:00:00", "2026-11-06T07:00:00"),
        ("d", "2026-11-01T00:59:00", "2026-10-31T01:00:00"),
        ("d", "2026-11-01T01:00:00", "2026-11-01T01:00:00"),
        ("c", "2026-11-01T06:14:00", "2026-11-01T00:15:00"),
        ("c", "2026-11-01T06:15:00", "2026-11-01T06:15:00"),
    ]
    for name, now, fire in cases:
        assert latest_fire(reports[name], at(now)) == at(fire), (name, now)
    assert reports["c"].period == "week" and reports["m"].period == "month" and reports["w"].day == 4


def test_schedules_and_periods_follow_the_configured_time_zone() -> None:
    """With `timezone: Europe/Paris`, "monthly on the 1st at 06:00" is 06:00 in Paris and the previous month is
    Paris' month (winter: UTC+1; the October period ends on the summer/winter change)."""
    (report,) = parse([{"name": "m", "schedule": "monthly", "day": 1, "at": "06:00", "deliver": {"directory": "x"}}])
    (cron,) = parse([{"name": "c", "schedule": "0 6 * * *", "period": "previous_day", "deliver": {"directory": "x"}}])
    paris = ZoneInfo("Europe/Paris")
    fire, span = due_period(report, at("2026-12-01T05:30:00"), paris)
    assert fire == at("2026-12-01T05:00:00")
    assert (span.start_ns, span.end_ns) == (ns_at("2026-10-31T23:00:00"), ns_at("2026-11-30T23:00:00"))
    fire, span = due_period(report, at("2026-11-15T00:00:00"), paris)
    assert fire == at("2026-11-01T05:00:00")
    assert (span.start_ns, span.end_ns) == (ns_at("2026-09-30T22:00:00"), ns_at("2026-10-31T23:00:00"))
    assert due_period(report, at("2026-12-01T05:30:00"))[0] == at("2026-11-01T06:00:00")  # UTC by default
    assert latest_fire(cron, at("2026-07-01T04:30:00"), paris) == at("2026-07-01T04:00:00")  # summer: UTC+2


def ns_at(text: str) -> int:
    return int(at(text).timestamp()) * 1_000_000_000


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x", "schedule": "hourly", "deliver": {"directory": "d"}}, "reports.x.schedule"),
        ({"name": "x", "schedule": "0 6 * * *", "deliver": {"directory": "d"}}, "reports.x.period is required"),
        ({"name": "x", "schedule": "monthly", "day": 31, "deliver": {"directory": "d"}}, "reports.x.day"),
        ({"name": "x", "schedule": "weekly", "day": "someday", "deliver": {"directory": "d"}}, "reports.x.day"),
        ({"name": "x", "schedule": "daily", "at": "25:00", "deliver": {"directory": "d"}}, "reports.x.at"),
        ({"name": "x", "schedule": "daily", "by": "day", "deliver": {"directory": "d"}}, "reports.x.by"),
        ({"name": "x", "schedule": "daily", "formats": ["docx"], "deliver": {"directory": "d"}}, "reports.x.formats"),
        ({"name": "x", "schedule": "daily", "deliver": {}}, "reports.x.deliver"),
        ({"name": "x", "schedule": "daily", "deliver": {"webhook": "ftp://h"}}, "reports.x.deliver.webhook.url"),
        ({"name": "x", "schedule": "daily", "deliver": {"email": {"host": "h", "from": "a@b"}}}, "email.to"),
        ({"name": "x", "schedule": "daily", "colour": 1, "deliver": {"directory": "d"}}, "colour"),
    ],
)
def test_bad_report_entries_are_refused_by_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse([entry])


def test_monthly_runs_with_an_injected_clock_and_a_missed_run_is_caught_up(store: Store, tmp_path: Path) -> None:
    clock = Clock("2026-11-01T05:59:00")
    config = [monthly(tmp_path)]
    out = tmp_path / "out"
    first = scheduler(store, config, clock)
    # Before 06:00 on the 1st, the latest scheduled time is October's: September's statement (none made yet).
    assert [o.key for o in first.run_due()] == ["report:chargeback:2026-09"]
    assert first.run_due() == []
    clock.now = at("2026-11-01T06:00:00")
    assert [(o.key, o.status) for o in first.run_due()] == [("report:chargeback:2026-10", "delivered")]
    clock.now = at("2026-11-20T12:00:00")
    assert first.run_due() == []
    assert sorted(p.name for p in out.iterdir()) == [
        f"chargeback-{month}.{fmt}" for month in ("2026-09", "2026-10") for fmt in ("csv", "json", "pdf")
    ]
    body = json.loads((out / "chargeback-2026-10.json").read_text())
    want = expected(OCTOBER)
    assert body["period"]["name"] == "2026-10"
    assert {r["department"]: r["customer_cost_nusd"] for r in body["rows"]} == {
        k: v["customer_cost_nusd"] for k, v in want.items()
    }
    total = sum(v["customer_cost_nusd"] for v in want.values())
    assert body["totals"]["customer_cost_nusd"] == total
    text = "".join(p.extract_text() for p in pypdf.PdfReader(out / "chargeback-2026-10.pdf").pages)
    assert dollars(total) in text
    assert f"\r\nTOTAL,{len(OCTOBER)}," in (out / "chargeback-2026-10.csv").read_bytes().decode()

    # No receiver ran on 2026-12-01 06:00: the next start makes November's.
    clock.now = at("2026-12-09T08:00:00")
    restarted = scheduler(store, config, clock)
    assert [o.key for o in restarted.run_due()] == ["report:chargeback:2026-11"]
    assert restarted.run_due() == []
    run = store.report_run("report:chargeback:2026-11")
    assert run is not None and run.status == "delivered" and run.attempts == 1 and run.delivered == "directory"


def test_webhook_with_retries_and_email_to_a_real_smtp_server(
    store: Store, tmp_path: Path, hook: Hook, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    hook.fail = 2  # the first two POSTs are answered 500: retried
    deliver = {
        "webhook": {"url": hook.url, "retries": 3, "timeout_seconds": 5, "headers": {"X-Team": "finance"}},
        "email": {"host": "127.0.0.1", "port": port, "from": "llmtally@example.com", "to": ["cfo@example.com"]},
    }
    logs: list[str] = []
    clock = Clock("2026-11-02T00:00:00")
    outcomes = scheduler(store, [monthly(tmp_path, **deliver)], clock, logs).run_due()
    assert [(o.key, o.status) for o in outcomes] == [("report:chargeback:2026-10", "delivered")]
    assert hook.attempts == 3 and len(hook.bodies) == 1
    assert sum("attempt" in line and "failed: HTTP 500" in line for line in logs) == 2
    posted = hook.bodies[0]
    assert posted["headers"]["X-Team"] == "finance"
    assert posted["json"]["report"] == "chargeback"
    total = sum(r.customer_cost_nusd or 0 for r in OCTOBER)
    assert posted["json"]["statement"]["totals"]["customer_cost_nusd"] == total
    files = {f["name"]: base64.b64decode(f["content_base64"]) for f in posted["json"]["files"]}
    assert set(files) == {"chargeback-2026-10.csv", "chargeback-2026-10.json", "chargeback-2026-10.pdf"}
    assert json.loads(files["chargeback-2026-10.json"])["totals"]["customer_cost_nusd"] == total

    [(sender, recipients, message)] = box.messages
    assert sender == "llmtally@example.com" and recipients == ["cfo@example.com"]
    assert message["Subject"] == "chargeback: 2026-10"
    parts = {p.get_filename(): p for p in message.walk() if p.get_filename()}
    assert set(parts) == set(files)
    pdf = parts["chargeback-2026-10.pdf"].get_payload(decode=True)
    assert isinstance(pdf, bytes)
    assert dollars(total) in "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain" and not p.get_filename())
    assert f"customer cost ${dollars(total)}" in str(text.get_payload(decode=True), "utf-8")


def test_a_failed_delivery_is_logged_and_retried_later_without_repeating_the_others(
    store: Store, tmp_path: Path, hook: Hook
) -> None:
    hook.delay = 1.0  # longer than the timeout: every attempt times out
    logs: list[str] = []
    clock = Clock("2026-11-01T07:00:00")
    config = [monthly(tmp_path, webhook={"url": hook.url, "retries": 1, "timeout_seconds": 0.3})]
    runner = scheduler(store, config, clock, logs)
    [outcome] = runner.run_due()
    assert outcome.status == "failed" and "timed out" in (outcome.error or "")
    run = store.report_run("report:chargeback:2026-10")
    assert run is not None and (run.status, run.attempts, run.delivered) == ("failed", 1, "directory")
    assert any("will retry" in line for line in logs)
    (tmp_path / "out" / "chargeback-2026-10.csv").unlink()

    clock.now += timedelta(minutes=1)  # too soon to retry
    assert runner.run_due() == []
    hook.delay = 0.0
    clock.now += timedelta(minutes=5)
    assert [(o.key, o.status) for o in runner.run_due()] == [("report:chargeback:2026-10", "delivered")]
    assert len(hook.bodies) == 1
    assert not (tmp_path / "out" / "chargeback-2026-10.csv").exists()  # the directory was delivered already
    run = store.report_run("report:chargeback:2026-10")
    assert run is not None and (run.status, run.attempts, run.delivered) == ("delivered", 2, "directory,webhook")
    clock.now += timedelta(hours=1)
    assert runner.run_due() == []


def test_two_schedulers_on_one_database_deliver_once(store_url: str, tmp_path: Path, hook: Hook) -> None:
    write(store_url, ALL)
    config = [
        {
            "name": "daily",
            "schedule": "daily",
            "at": "00:30",
            "by": "provider",
            "formats": ["json"],
            "deliver": {"webhook": hook.url, "directory": str(tmp_path / "out")},
        },
        monthly(tmp_path, webhook=hook.url),
    ]
    clock = Clock("2026-10-01T00:00:00")
    stores = [open_store(store_url), open_store(store_url)]
    try:
        runners = [scheduler(s, config, clock) for s in stores]
        delivered: list[str] = []
        for hours in range(0, 24 * 4, 7):  # both look for due reports at the same moments over four days
            clock.now = at("2026-10-01T00:00:00") + timedelta(hours=hours)
            barrier = threading.Barrier(2)

            def run(runner: ReportScheduler, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                delivered.extend(o.key for o in runner.run_due())

            threads = [threading.Thread(target=run, args=(r,)) for r in runners]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert sorted(delivered) == sorted(set(delivered))
        # At 00:00 on Oct 1 the latest runs due are August's (Sep 1 06:00) and Sep 29's (Sep 30 00:30).
        want = {"report:chargeback:2026-08", "report:chargeback:2026-09"}
        want |= {
            f"report:daily:{day}" for day in ("2026-09-29", "2026-09-30", "2026-10-01", "2026-10-02", "2026-10-03")
        }
        assert set(delivered) == want
        posted = sorted((b["json"]["report"], b["json"]["statement"]["period"]["name"]) for b in hook.bodies)
        assert posted == sorted((k.split(":")[1], k.split(":")[2]) for k in want)
    finally:
        for s in stores:
            s.close()


# --- inside serve ------------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def serve_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/audit.db"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_serve_delivers_scheduled_reports_once(serve_store: str, tmp_path: Path, hook: Hook) -> None:
    now = time.time_ns()
    yesterday = now - now % (24 * HOUR) - 24 * HOUR
    records = [record(n, yesterday + n * HOUR, record_id=f"y{n:015x}") for n in range(10)]
    write(serve_store, records)
    out = tmp_path / "out"
    reports = [
        {
            "name": "yesterday",
            "schedule": "* * * * *",
            "period": "previous_day",
            "by": "provider",
            "formats": ["csv", "json"],
            "deliver": {"directory": str(out), "webhook": hook.url},
        }
    ]
    receivers = [Receiver(tmp_path, serve_store, reports=reports, pricing=PRICING) for _ in range(2)]
    for r in receivers:
        r.start()
    try:
        day = datetime.fromtimestamp(yesterday / 1e9, UTC).date().isoformat()
        wait_for(lambda: (out / f"yesterday-{day}.json").exists() and len(hook.bodies) >= 1)
        body = json.loads((out / f"yesterday-{day}.json").read_text())
        assert body["totals"]["requests"] == len(records)
        assert body["totals"]["customer_cost_nusd"] == sum(r.customer_cost_nusd or 0 for r in records)
        time.sleep(2)
        assert len(hook.bodies) == 1  # two replicas, one delivery
        with open_store(serve_store) as store:
            run = store.report_run(f"report:yesterday:{day}")
            assert run is not None and run.status == "delivered"
    finally:
        for r in receivers:
            assert r.stop() == 0
    logs = "".join(r.log.read_text() for r in receivers)
    assert logs.count(f"report yesterday ({day}) delivered") == 1


def test_email_over_starttls_with_credentials_from_the_environment(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SMTP server that requires STARTTLS (a certificate of the test's CA) and a login: the credentials come
    from the environment variables the config names; without them the delivery fails, logged."""
    authority = Authority(tmp_path)
    server_pair = authority.issue("smtp", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_pair.cert, server_pair.key)
    logins: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = (v.decode() if isinstance(v, bytes) else v for v in (data.login, data.password))
        logins.append((login, password))
        return AuthResult(success=True)

    box = Mailbox()
    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    try:
        mail = {
            "host": "127.0.0.1",
            "port": port,
            "from": "llmtally@example.com",
            "to": "finance@example.com",
            "starttls": True,
            "ca_file": str(authority.pair.cert),
            "username_env": "TEST_SMTP_USER",
            "password_env": "TEST_SMTP_PASSWORD",
            "retries": 0,
        }
        report = {**monthly(tmp_path), "formats": ["csv"], "deliver": {"email": mail}}
        monkeypatch.setenv("TEST_SMTP_USER", "reports")
        monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
        logs: list[str] = []
        clock = Clock("2026-11-01T07:00:00")
        [failed] = scheduler(store, [report], clock, logs).run_due()
        assert failed.status == "failed" and "$TEST_SMTP_PASSWORD" in (failed.error or "")
        assert box.messages == [] and logins == []
        assert any("to email: attempt 1 of 1 failed" in line for line in logs)

        monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-password")
        clock.now += timedelta(minutes=10)
        [delivered] = scheduler(store, [report], clock, logs).run_due()
        assert delivered.status == "delivered"
        assert logins == [("reports", "s3cret-password")]
        [(_, recipients, message)] = box.messages
        assert recipients == ["finance@example.com"]
        [attachment] = [p for p in message.walk() if p.get_filename()]
        assert attachment.get_filename() == "chargeback-2026-10.csv"
        content = attachment.get_payload(decode=True)
        assert isinstance(content, bytes)
        assert f"\r\nTOTAL,{len(OCTOBER)}," in content.decode()
    finally:
        controller.stop()


def test_a_new_reports_config_applies_to_the_running_scheduler(store: Store, tmp_path: Path) -> None:
    clock = Clock("2026-11-01T07:00:00")
    running = scheduler(store, [], clock)
    running.start()
    try:
        path = tmp_path / "llmtally.yaml"
        path.write_text(json.dumps({"reports": [monthly(tmp_path)]}))
        running.apply_config(load(str(path), env={}))
        assert [r.name for r in running.reports] == ["chargeback"]
        wait_for(lambda: (tmp_path / "out" / "chargeback-2026-10.pdf").exists(), timeout=10)  # woken at once
        path.write_text(json.dumps({"reports": [{**monthly(tmp_path), "schedule": "hourly"}]}))
        with pytest.raises(ConfigError, match=r"reports\.chargeback\.schedule"):
            running.apply_config(load(str(path), env={}))
        assert [r.schedule for r in running.reports] == ["monthly"]  # a bad section changes nothing
        running.apply([])
        assert running.reports == ()
    finally:
        running.close()
    run = store.report_run("report:chargeback:2026-10")
    assert run is not None and run.status == "delivered"


def test_a_claim_left_by_a_stopped_process_is_taken_over(store: Store, tmp_path: Path) -> None:
    clock = Clock("2026-11-01T07:00:00")
    key = "report:chargeback:2026-10"
    claimed_at = clock.now - timedelta(minutes=10)
    left = ReportRun(key, "chargeback", 0, 1, "department", "claimed", int(claimed_at.timestamp()) * 10**9)
    assert store.claim_report_run(left)
    assert not store.claim_report_run(left)  # the key is unique
    runner = scheduler(store, [monthly(tmp_path)], clock)
    assert runner.run_due() == []  # claimed 10 minutes ago: maybe still being produced elsewhere
    clock.now += timedelta(minutes=6)
    assert [(o.key, o.status) for o in runner.run_due()] == [(key, "delivered")]
    assert (tmp_path / "out" / "chargeback-2026-10.csv").exists()
    run = store.report_run(key)
    assert run is not None and (run.status, run.attempts) == ("delivered", 1)
