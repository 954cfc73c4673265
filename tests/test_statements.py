"""Statements (`llmtally report`, `GET /api/v1/report`) from a running `llmtally serve` on SQLite and PostgreSQL:
totals equal `llmtally usage` to the nano-dollar, fees and markup, price sources, CSV / JSON / HTML / PDF read back
(the PDF by pypdf), member scoping, and a re-run of a closed period before and after a reprice."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pypdf
import pytest
import yaml
from test_api import record, write

from conftest import fresh_store
from llmtally.cli import main
from llmtally.exporter.normalise.record import Record
from receiver import Receiver

HOUR = 3_600_000_000_000
# A markup and a fixed fee, and groq's model priced by an override with a fee of its own.
PRICING = {
    "markup": 0.2,
    "fixed_fee_usd": 0.000001,
    "overrides": [
        {"provider": "groq", "model": "llama-3.3", "input_per_mtok": 1, "output_per_mtok": 2, "fixed_fee_usd": 0.000002}
    ],
}
FEES_NUSD = {"groq": 2000}  # by provider; others 1000
ADMIN = "admin-token-0123456789"
ALICE = "alice-token-0123456789"
APP = "app-token-0123456789ab"
TOKENS = [
    {"name": "ops", "role": "admin", "token": ADMIN},
    {"name": "alice", "role": "member", "user": "alice", "token": ALICE},
    {"name": "app", "role": "app", "token": APP},
]


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


def dept(n: int) -> str | None:
    return ("sales", "research", None)[n % 3]


def team(n: int) -> dict[str, str]:
    """A custom dimension (`team`, declared by the receiver) on most records."""
    return {} if n % 4 == 3 else {"team": ("platform", "search")[n % 2]}


def month_record(n: int, start_ns: int) -> Record:
    fields: dict[str, Any] = {"record_id": f"s{n:015x}", "department": dept(n), "dimensions": team(n)}
    r = record(n, start_ns, **fields)
    if r.priced and n % 2 == 0:
        r.price_source = f"genai-prices 0.0.0 {r.provider}/{r.request_model}"
    return r


OCTOBER = [month_record(n, ns("2026-10-01T00:00:00") + n * 29 * HOUR) for n in range(25)]
OUTSIDE = [
    month_record(200, ns("2026-09-30T23:59:59") + 999_999_000),
    month_record(201, ns("2026-11-01T00:00:00")),
]
SEPTEMBER = [month_record(300 + n, ns("2026-09-02T00:00:00") + n * 23 * HOUR) for n in range(12)]
ALL = OCTOBER + OUTSIDE + SEPTEMBER


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """A receiver with API tokens and a markup and fixed fee; records written before it starts and while it runs."""
    workdir = tmp_path_factory.mktemp(f"statements-{request.param}")
    url, drop = fresh_store(request, workdir)
    write(url, ALL[:20])
    receiver = Receiver(workdir, url, api={"tokens": TOKENS}, pricing=PRICING, dimensions=["team"]).start()
    try:
        write(url, ALL[20:])
        yield receiver
    finally:
        assert receiver.stop() == 0
        drop()


def get(receiver: Receiver, token: str = ADMIN, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{receiver.http_url}/api/v1/report",
        params=params,
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=60,
    )


def report(receiver: Receiver, token: str = ADMIN, **params: Any) -> Any:
    response = get(receiver, token, **params)
    assert response.status_code == 200, response.text
    return response.json()


def config_of(receiver: Receiver) -> str:
    return str(receiver.workdir / f"llmtally-{receiver.http_port}.yaml")


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def expected(records: Sequence[Record], key: str = "department") -> dict[str, dict[str, Any]]:
    """Per group value ('' for none): the figures a statement must show, from the records."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for r in records:
        e = out[(getattr(r, key) if hasattr(r, key) else r.dimensions.get(key)) or ""]
        e["requests"] += 1
        e["input_tokens"] += r.input_tokens
        e["output_tokens"] += r.output_tokens
        e["cached_tokens"] += r.cached_tokens
        e["provider_cost_nusd"] += r.provider_cost_nusd or 0
        e["customer_cost_nusd"] += r.customer_cost_nusd or 0
        fee = FEES_NUSD.get(r.provider, 1000) if r.priced and r.customer_cost_nusd else 0
        e["fee_nusd"] += fee
        e["markup_nusd"] += (r.customer_cost_nusd or 0) - (r.provider_cost_nusd or 0) - fee
        e["unpriced_requests"] += not r.priced
        e.setdefault("price_sources", Counter())[r.price_source or "unpriced"] += 1
    return {k: {**v, "price_sources": dict(v["price_sources"])} for k, v in out.items()}


FIGURES = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "provider_cost_nusd",
    "markup_nusd",
    "fee_nusd",
    "customer_cost_nusd",
    "unpriced_requests",
    "price_sources",
)


def dollars(nusd: int) -> str:
    return f"{Decimal(nusd).scaleb(-9):.9f}"


def test_statement_by_department_equals_usage_to_the_nano_dollar(served: Receiver, capsys) -> None:
    body = report(served, month="2026-10", group_by="department")
    assert body["period"] == {"name": "2026-10", "start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}
    want = expected(OCTOBER)
    assert {row["department"]: {f: row[f] for f in FIGURES} for row in body["rows"]} == want
    totals = expected(OCTOBER, "environment")["production"]
    assert {f: body["totals"][f] for f in FIGURES} == totals
    assert [r["customer_cost_nusd"] for r in body["rows"]] == sorted(
        (r["customer_cost_nusd"] for r in body["rows"]), reverse=True
    )
    # `llmtally usage` over the same period (the CLI, on the same store and config).
    config = config_of(served)
    usage = cli_json(capsys, "usage", "--config", config, "--start", "2026-10-01", "--end", "2026-10-31")
    for name in ("requests", "input_tokens", "output_tokens", "cached_tokens", "provider_cost_nusd"):
        assert usage["totals"][name] == body["totals"][name], name
    assert usage["totals"]["customer_cost_nusd"] == body["totals"]["customer_cost_nusd"]
    # The command gives the same statement.
    cli = cli_json(capsys, "report", "--config", config, "--month", "2026-10", "--by", "department")
    assert cli["rows"] == body["rows"] and cli["totals"] == body["totals"]
    assert cli["fingerprint"] == body["fingerprint"]


def test_other_periods_and_groupings(served: Receiver) -> None:
    week = report(served, week="2026-W41", group_by="user,provider")  # 2026-10-05 .. 2026-10-12
    inside = [r for r in ALL if ns("2026-10-05T00:00:00") <= r.start_time_ns < ns("2026-10-12T00:00:00")]
    assert inside and week["totals"]["requests"] == len(inside)
    assert week["totals"]["customer_cost_nusd"] == sum(r.customer_cost_nusd or 0 for r in inside)
    assert {(row["user"], row["provider"]) for row in week["rows"]} == {(r.user_id or "", r.provider) for r in inside}
    custom = report(served, start="2026-09-30T23:59:59Z", end="2026-11-01T00:00:01Z")
    assert custom["totals"]["requests"] == len(OCTOBER) + 2
    filtered = report(served, month="2026-10", group_by="model", provider="openai")
    assert {row["model"] for row in filtered["rows"]} == {"gpt-4o-mini", "gpt-4o"}
    assert filtered["totals"]["requests"] == sum(r.provider == "openai" for r in OCTOBER)


def test_csv_html_and_pdf_show_the_numbers(served: Receiver, tmp_path: Path, capsys) -> None:
    want = expected(OCTOBER)
    total = sum(v["customer_cost_nusd"] for v in want.values())
    fee = sum(v["fee_nusd"] for v in want.values())

    text = get(served, month="2026-10", group_by="department", format="csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["department"] for r in rows][-1] == "TOTAL"
    assert rows[-1]["customer cost USD"] == dollars(total) and rows[-1]["fee USD"] == dollars(fee)
    by = {r["department"]: r for r in rows[:-1]}
    assert {k: by[k]["markup USD"] for k in want} == {k: dollars(v["markup_nusd"]) for k, v in want.items()}

    by_feature = list(csv.DictReader(io.StringIO(get(served, month="2026-10", group_by="feature", format="csv").text)))
    assert '\'=HYPERLINK("http://evil.example/","click")' in {r["feature"] for r in by_feature}  # formula-safe

    page = get(served, month="2026-10", group_by="department", format="html")
    assert page.headers["content-type"].startswith("text/html")
    cells = _table(page.text)
    heading = cells[0]
    last = dict(zip(heading, cells[-1], strict=True))
    assert last["department"] == "TOTAL" and last["customer cost USD"] == dollars(total)
    assert not any(tag in page.text for tag in ("<script", "src=", "href=", "<link"))  # self-contained
    chart = page.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert chart.count("<rect") == len(want)
    for value in want.values():
        assert f"${dollars(value['customer_cost_nusd'])}<" in chart
    sales = next(dict(zip(heading, c, strict=True)) for c in cells[1:] if c[0] == "sales")
    assert sales["provider cost USD"] == dollars(want["sales"]["provider_cost_nusd"])

    pdf_path = tmp_path / "october.pdf"
    code = main(
        [
            "report",
            "--config",
            config_of(served),
            "--month",
            "2026-10",
            "--by",
            "department",
            "--format",
            "pdf",
            "-o",
            str(pdf_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    reader = pypdf.PdfReader(pdf_path)
    content = "\n".join(p.extract_text() for p in reader.pages)
    assert "2026-10" in content and "TOTAL" in content
    for figure in (dollars(total), dollars(fee), dollars(want["research"]["customer_cost_nusd"])):
        assert figure in content, figure
    api_pdf = get(served, month="2026-10", group_by="department", format="pdf")
    assert api_pdf.headers["content-type"] == "application/pdf"
    assert dollars(total) in "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(api_pdf.content)).pages)


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table(text: str) -> list[list[str]]:
    parser = _Cells()
    parser.feed(text)
    return parser.rows


def test_members_see_their_own_and_apps_nothing(served: Receiver) -> None:
    mine = report(served, ALICE, month="2026-10", group_by="department")
    alices = [r for r in OCTOBER if r.user_id == "alice"]
    assert mine["totals"]["requests"] == len(alices)
    assert mine["totals"]["customer_cost_nusd"] == sum(r.customer_cost_nusd or 0 for r in alices)
    assert get(served, ALICE, month="2026-10", user="bob").status_code == 403
    assert get(served, APP, month="2026-10").status_code == 403
    assert get(served, "", month="2026-10").status_code == 401


def test_bad_parameters(served: Receiver) -> None:
    for params in (
        {},
        {"month": "2026-13"},
        {"week": "2026-W60"},
        {"month": "2026-10", "day": "2026-10-01"},
        {"range": "7d", "month": "2026-10"},
        {"range": "forever"},
        {"month": "2026-10", "group_by": "day"},
        {"month": "2026-10", "group_by": "colour"},
        {"month": "2026-10", "format": "docx"},
    ):
        response = get(served, **params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]
    assert report(served, range="7d")["period"]["name"] == "7d"  # the API's range presets are periods too


def test_a_rerun_gives_the_same_numbers_until_records_are_repriced(served: Receiver, capsys) -> None:
    first = report(served, month="2026-09", group_by="provider")
    assert first["comparison"]["closed"] and first["comparison"]["same"]
    again = report(served, month="2026-09", group_by="provider")
    assert again["fingerprint"] == first["fingerprint"] and again["comparison"]["same"]
    assert again["comparison"]["reference"] == first["generated_at"]
    assert again["generated_at"] >= first["generated_at"]
    open_period = report(served, start="2026-09-01")
    assert open_period["comparison"]["closed"] is False

    # Reprice September with the catalog's prices (the test records carry made-up costs).
    config = config_of(served)
    outcome = cli_json(capsys, "reprice", "--config", config, "--since", "2026-09-01", "--until", "2026-10-01")
    assert outcome["changed"] > 0
    after = report(served, month="2026-09", group_by="provider")
    comparison = after["comparison"]
    assert comparison["same"] is False and after["fingerprint"] != first["fingerprint"]
    assert comparison["repriced_records"] == outcome["changed"]
    assert "repriced" in comparison["message"]
    september = {r.record_id for r in ALL if r.start_time_ns < ns("2026-10-01T00:00:00")}
    assert {r["id"] for r in comparison["repriced"]} <= september
    before_rows = {row["provider"]: row for row in first["rows"]}
    changes = {(c["provider"], c["figure"]): c for c in comparison["changes"]}
    for row in after["rows"]:
        old = before_rows[row["provider"]]
        if row["customer_cost_nusd"] != old["customer_cost_nusd"]:
            change = changes[(row["provider"], "customer_cost_nusd")]
            assert (change["before"], change["now"]) == (old["customer_cost_nusd"], row["customer_cost_nusd"])
    assert comparison["changes"]
    html_text = get(served, month="2026-09", group_by="provider", format="html").text
    assert "repriced since" in html_text
    # October was not repriced: its statement still matches the first one kept.
    assert report(served, month="2026-10", group_by="department")["comparison"]["same"]


def test_the_command_prints_a_table_and_writes_files(served: Receiver, tmp_path: Path, capsys) -> None:
    config = config_of(served)
    code = main(["report", "--config", config, "--month", "2026-10", "--by", "department", "--title", "Chargeback"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Chargeback 2026-10" in out and "total" in out and "research" in out
    sources = Counter(r.price_source for r in OCTOBER)
    assert f"genai-prices 0.0.0 openai/gpt-4o-mini ({sources['genai-prices 0.0.0 openai/gpt-4o-mini']})" in out
    last = out.strip().splitlines()[-1]
    assert last == "first statement kept" or last.startswith("same figures as the statement produced at"), last

    assert main(["report", "--config", config, "--month", "2026-10", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][0] == "all" and rows[-1][0] == "TOTAL" and rows[-1][1] == str(len(OCTOBER))

    page = tmp_path / "october.html"
    assert main(["report", "--config", config, "--month", "2026-10", "--format", "html", "-o", str(page)]) == 0
    assert f"<td>TOTAL</td><td>{len(OCTOBER)}</td>" in page.read_text()

    assert main(["report", "--config", config, "--month", "2026-10", "--format", "pdf"]) == 2
    assert "--output" in capsys.readouterr().err
    assert main(["report", "--config", config, "--month", "2026-10", "--by", "hour"]) == 2
    assert "not hour" in capsys.readouterr().err


def test_a_changed_fixed_fee_is_named_as_the_cause(served: Receiver, tmp_path: Path, capsys) -> None:
    report(served, month="2026-10", group_by="department")  # the reference is kept (if no test kept it before)
    settings = yaml.safe_load(Path(config_of(served)).read_text())
    settings["pricing"]["fixed_fee_usd"] = 0.000003
    other = tmp_path / "llmtally.yaml"
    other.write_text(yaml.safe_dump(settings))
    body = cli_json(capsys, "report", "--config", str(other), "--month", "2026-10", "--by", "department")
    comparison = body["comparison"]
    assert comparison["same"] is False and "fixed fee" in comparison["message"]
    assert {c["figure"] for c in comparison["changes"]} == {"fee_nusd", "markup_nusd"}
    assert body["totals"]["customer_cost_nusd"] == sum(r.customer_cost_nusd or 0 for r in OCTOBER)
    assert report(served, month="2026-10", group_by="department")["comparison"]["same"]  # the reference stays


def test_statement_by_a_custom_dimension(served: Receiver, capsys) -> None:
    """A dimension declared in llmtally.yaml groups a statement like a built-in one (API and command): fees, markup
    and price sources land in the dimension's groups, not in the empty one."""
    want = expected(OCTOBER, "team")
    assert set(want) == {"platform", "search", ""}
    body = report(served, month="2026-10", group_by="team")
    assert {row["team"] or "": {k: row[k] for k in FIGURES} for row in body["rows"]} == want
    by_cli = cli_json(capsys, "report", "--config", config_of(served), "--month", "2026-10", "--by", "team")
    assert {row["team"] or "": {k: row[k] for k in FIGURES} for row in by_cli["rows"]} == want
    only = report(served, month="2026-10", team="search")
    assert only["totals"]["customer_cost_nusd"] == want["search"]["customer_cost_nusd"]
