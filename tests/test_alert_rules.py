"""The alert rules and the Alertmanager example of alert-rules/: `promtool check rules` and `promtool test rules`,
`amtool check-config` and every route case of alert-rules/tests/routes.yml, the inhibitions on a real Alertmanager,
and the rules' conventions (severity and family, annotations, runbook anchors in the README, every threshold key
used, the environment kept, the scrape job name in the receiver-down rules only).
A missing binary fails the test with the way to install it."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from alerting_stack import Alertmanager
from llmtally.exporter.budgets.config import DEFAULT_THRESHOLDS

RULES = Path(__file__).resolve().parent.parent / "alert-rules"
CONFIG = RULES / "alertmanager.yml"
README = RULES / "README.md"
SEVERITIES = {"info", "warning", "critical"}
FAMILY = re.compile(r"[a-z][a-z0-9_]*")
RUNBOOK = "https://github.com/llmtally/llmtally/blob/main/alert-rules/README.md#"
THRESHOLD = re.compile(r'completion_alert_threshold\{alert="([^"]*)"\}')
INSTALL_HINT = "bash scripts/test.sh installs them (Debian packages prometheus and prometheus-alertmanager)"


def tool(name: str) -> str:
    """The path of `name`; fails the test when it is not installed."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: {INSTALL_HINT}")
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=RULES)


def rule_files() -> list[Path]:
    files = sorted(RULES.glob("*.rules.yml"))
    assert files, f"no *.rules.yml in {RULES}"
    return files


def rules_of(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for document in documents for group in document["groups"] for rule in group["rules"]]


def load_rules() -> list[dict[str, Any]]:
    return rules_of([yaml.safe_load(path.read_text()) for path in rule_files()])


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of `markdown`."""
    found = set()
    for line in markdown.splitlines():
        heading = re.match(r"#{1,6}\s+(.+?)\s*$", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def convention_problems(rules: list[dict[str, Any]], readme: str) -> list[str]:
    """What an alert lacks: an LLM CamelCase name, a severity of the scale, a family (Alertmanager's inhibitions
    compare it), summary and description, and a runbook_url whose anchor is a heading of the README."""
    problems = []
    headings = anchors(readme)
    for rule in rules:
        if "alert" not in rule:
            continue
        name = rule["alert"]
        if not re.fullmatch(r"LLM(?:[A-Z0-9][a-z0-9]*)+", name):
            problems.append(f"{name}: not a CamelCase name with the LLM prefix")
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {rule.get('labels', {}).get('severity')!r} not in {sorted(SEVERITIES)}")
        if not FAMILY.fullmatch(str(rule.get("labels", {}).get("family", ""))):
            problems.append(f"{name}: no family label (lower_snake_case)")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            if not annotations.get(key):
                problems.append(f"{name}: no {key}")
        url = annotations.get("runbook_url", "")
        if not url.startswith(RUNBOOK):
            problems.append(f"{name}: runbook_url {url!r} does not start with {RUNBOOK}")
        elif url[len(RUNBOOK) :] not in headings:
            problems.append(f"{name}: runbook anchor #{url[len(RUNBOOK) :]} is not a heading of {README.name}")
    return problems


def threshold_problems(rules: list[dict[str, Any]], keys: set[str]) -> list[str]:
    """Threshold keys no rule reads, and keys rules read that the receiver does not export."""
    used = {key for rule in rules for key in THRESHOLD.findall(rule["expr"])}
    return [f"threshold {k} used by no rule" for k in sorted(keys - used)] + [
        f"unknown threshold {k}" for k in sorted(used - keys)
    ]


# Series that carry the environment label: the recording rules' `llmtally:` level and the completion_* counters and
# histograms. An aggregation over them that drops it would send a staging-only failure without its environment.
ENVIRONMENT_SOURCES = re.compile(r"\bllmtally:completion_|(?<![:\w])completion_\w+_(?:total|bucket)\b")
BY_CLAUSE = re.compile(r"\bby\s*\(([^)]*)\)")
# Rules whose aggregation is deliberately not per environment: the rate-limit gauges are per receiver process.
PER_INSTANCE = {"llmtally_instance:completion_requests:increase15m"}


def scope_problems(rules: list[dict[str, Any]]) -> list[str]:
    """Every `by (...)` of a rule reading series with an environment keeps `environment`."""
    problems = []
    for rule in rules:
        name = rule.get("alert") or rule.get("record")
        if name in PER_INSTANCE or not ENVIRONMENT_SOURCES.search(rule["expr"]):
            continue
        for clause in BY_CLAUSE.findall(rule["expr"]):
            if "environment" not in {label.strip() for label in clause.split(",")}:
                problems.append(f"{name}: by ({clause}) drops environment")
    return problems


# --- promtool ------------------------------------------------------------------------------------------------------


def test_promtool_check_rules():
    result = run(tool("promtool"), "check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(rule_files()), result.stdout


@pytest.mark.parametrize("test_file", sorted(p.name for p in (RULES / "tests").glob("*.test.yml")))
def test_promtool_test_rules(test_file):
    result = run(tool("promtool"), "test", "rules", f"tests/{test_file}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_has_a_unit_test():
    """Each alertname appears in some alert_rule_test, and each recording rule in some promql_expr_test."""
    tested_alerts: set[str] = set()
    tested_records: set[str] = set()
    for path in (RULES / "tests").glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested_alerts |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
            tested_records |= {t["expr"] for t in case.get("promql_expr_test", [])}
    rules = load_rules()
    assert {r["alert"] for r in rules if "alert" in r} - tested_alerts == set()
    assert {r["record"] for r in rules if "record" in r} - tested_records == set()


def test_conventions():
    assert convention_problems(load_rules(), README.read_text()) == []


def test_every_aggregation_keeps_the_environment():
    assert scope_problems(load_rules()) == []


def test_the_scrape_job_name_is_only_in_the_receiver_down_rules():
    """The new-series logic matches `up` by job and instance, and LLMIngestionStalled needs no `up` at all: only the
    rules that must find the receivers' targets name the scrape job."""
    naming = {r.get("alert") or r.get("record") for r in load_rules() if "job=" in r["expr"]}
    assert naming == {"LLMReceiverDown", "LLMAllReceiversDown"}


def test_every_threshold_key_is_used():
    assert threshold_problems(load_rules(), set(DEFAULT_THRESHOLDS)) == []


def test_the_checks_find_a_broken_rule():
    """The convention and threshold checks report a rule broken on purpose."""
    rules = load_rules()
    alert = next(r for r in rules if r.get("alert") == "LLMDailySpendMedium")
    broken = {
        **alert,
        "alert": "dailySpend",
        "labels": {"severity": "high"},
        "annotations": {"runbook_url": RUNBOOK + "no-such-section"},
        "expr": alert["expr"].replace("spend_daily_medium_usd", "spend_daily_typo_usd"),
    }
    others = [r for r in rules if r.get("alert") != "LLMDailySpendMedium"]
    problems = convention_problems([broken], README.read_text())
    assert len(problems) == 6, problems  # name, severity, family, summary, description, anchor
    assert "no-such-section" in problems[-1]
    errors = next(r for r in rules if r.get("alert") == "LLMErrorRateHigh")
    per_model = {**errors, "expr": errors["expr"].replace("by (environment, provider, model)", "by (provider, model)")}
    assert scope_problems([per_model]) == ["LLMErrorRateHigh: by (provider, model) drops environment"] * 2
    assert threshold_problems([*others, broken], set(DEFAULT_THRESHOLDS)) == ["unknown threshold spend_daily_typo_usd"]
    assert threshold_problems(others, set(DEFAULT_THRESHOLDS)) == []  # the high and critical rules use the key too
    without = [r for r in rules if r.get("alert") != "LLMSpendSpike"]
    assert threshold_problems(without, set(DEFAULT_THRESHOLDS)) == [
        "threshold spend_spike_min_usd used by no rule",
        "threshold spend_spike_ratio used by no rule",
    ]


def test_no_literal_threshold_in_a_comparison():
    """Comparisons of a configurable threshold read completion_alert_threshold: the only literal on the right of a
    comparison operator is 0 or 1 (any unpriced, up, credit used up)."""
    for rule in load_rules():
        for literal in re.findall(r"(?:[<>]=?|==)\s*(-?\d+(?:\.\d+)?)\b", rule["expr"]):
            assert literal in ("0", "1"), (rule.get("alert") or rule.get("record"), literal)


# --- amtool --------------------------------------------------------------------------------------------------------


def test_amtool_check_config():
    result = run(tool("amtool"), "check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


ROUTE_CASES = yaml.safe_load((RULES / "tests" / "routes.yml").read_text())


@pytest.mark.parametrize("case", ROUTE_CASES, ids=lambda c: "-".join(str(v) for v in c["labels"].values()))
def test_route(case):
    labels = [f"{k}={v}" for k, v in case["labels"].items()]
    expected = ",".join(case["receivers"])
    result = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={expected}", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == expected


def test_every_route_has_a_case():
    config = yaml.safe_load(CONFIG.read_text())
    routes = [config["route"], *config["route"]["routes"]]
    answered = {receiver for case in ROUTE_CASES for receiver in case["receivers"]}
    assert {route["receiver"] for route in routes} - answered == set()
    assert {r["name"] for r in config["receivers"]} - answered == set()


def test_every_severity_of_the_rules_has_a_route():
    """A production alert of each severity the rules use reaches a receiver of its own, not the default one."""
    for severity in sorted({labels["severity"] for labels in RULE_LABELS.values()}):
        labels = ["alertname=LLMAnything", f"severity={severity}", "environment=prod"]
        result = run(tool("amtool"), "config", "routes", "test", f"--config.file={CONFIG}", *labels)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() not in ("", "llmtally-default"), (severity, result.stdout)


# --- inhibitions on a real Alertmanager ----------------------------------------------------------------------------


RULE_LABELS = {r["alert"]: r.get("labels", {}) for r in load_rules() if "alert" in r}


def alert(name: str, **scope: str) -> dict[str, str]:
    """The labels alert `name` carries: its rule's severity and family, and `scope`."""
    return {"alertname": name, **RULE_LABELS[name], **scope}


def prod(**scope: str) -> dict[str, str]:
    return {"environment": "prod", **scope}


# (source, target, whether the target is inhibited): every case has scope values of its own.
INHIBITIONS = [
    # Budgets: 100 % silences 90 %, 75 % and the forecast; 90 % silences 75 %; never across budgets or upwards.
    (alert("LLMBudgetExceeded", budget="b1"), alert("LLMBudget90Percent", budget="b1"), True),
    (alert("LLMBudgetExceeded", budget="b2"), alert("LLMBudget75Percent", budget="b2"), True),
    (alert("LLMBudgetExceeded", budget="b9"), alert("LLMBudgetForecastBreach", budget="b9"), True),
    (alert("LLMBudget90Percent", budget="b3"), alert("LLMBudget75Percent", budget="b3"), True),
    (alert("LLMBudgetExceeded", budget="b4"), alert("LLMBudget75Percent", budget="b5"), False),
    (alert("LLMBudget75Percent", budget="b6"), alert("LLMBudget90Percent", budget="b6"), False),
    # Daily spend: critical > warning > info in one environment; not across environments or the total.
    (alert("LLMDailySpendCritical", environment="e1"), alert("LLMDailySpendHigh", environment="e1"), True),
    (alert("LLMDailySpendCritical", environment="e2"), alert("LLMDailySpendMedium", environment="e2"), True),
    (alert("LLMDailySpendHigh", environment="e3"), alert("LLMDailySpendMedium", environment="e3"), True),
    (alert("LLMDailySpendCritical", environment="e4"), alert("LLMDailySpendMedium", environment="e5"), False),
    (alert("LLMDailySpendTotalCritical"), alert("LLMDailySpendTotalMedium"), True),
    (alert("LLMDailySpendTotalHigh"), alert("LLMDailySpendHigh", environment="e6"), False),
    # Error rates: critical silences warning of the same environment, provider and model only.
    (
        alert("LLMErrorRateCritical", **prod(provider="p1", model="m1")),
        alert("LLMErrorRateHigh", **prod(provider="p1", model="m1")),
        True,
    ),
    (
        alert("LLMErrorRateCritical", **prod(provider="p3", model="m1")),
        alert("LLMErrorRateHigh", **prod(provider="p3", model="m2")),
        False,
    ),
    (
        alert("LLMErrorRateCritical", environment="staging", provider="p2", model="m1"),
        alert("LLMErrorRateHigh", **prod(provider="p2", model="m1")),
        False,
    ),
    # Another family of the same scope is not silenced.
    (
        alert("LLMErrorRateCritical", **prod(provider="p8", model="m1")),
        alert("LLMLatencyP95High", **prod(provider="p8", model="m1")),
        False,
    ),
    # Provider down silences its models down and error rates; model down its error rates.
    (alert("LLMProviderDown", **prod(provider="p4")), alert("LLMModelDown", **prod(provider="p4", model="m1")), True),
    (
        alert("LLMProviderDown", **prod(provider="p9")),
        alert("LLMErrorRateCritical", **prod(provider="p9", model="m1")),
        True,
    ),
    (
        alert("LLMModelDown", **prod(provider="p10", model="m1")),
        alert("LLMErrorRateHigh", **prod(provider="p10", model="m1")),
        True,
    ),
    (
        alert("LLMModelDown", **prod(provider="p11", model="m1")),
        alert("LLMErrorRateHigh", **prod(provider="p11", model="m2")),
        False,
    ),
    # Credits.
    (alert("LLMCreditExhausted", provider="p5"), alert("LLMCreditLow", provider="p5"), True),
    (alert("LLMCreditExhausted", provider="p6"), alert("LLMCreditLow", provider="p7"), False),
    # Receivers: all down silences each one down of the same job.
    (alert("LLMAllReceiversDown", job="j1"), alert("LLMReceiverDown", job="j1", instance="r1"), True),
    (alert("LLMAllReceiversDown", job="j2"), alert("LLMReceiverDown", job="j3", instance="r1"), False),
    # Alerts of other rule sets sharing the Alertmanager neither silence nor get silenced, even with a family label.
    (
        {"alertname": "NodeDown", "severity": "critical", "family": "receiver_down", "instance": "r9"},
        alert("LLMReceiverDown", job="j5", instance="r9"),
        False,
    ),
    (
        alert("LLMCreditExhausted", provider="p12"),
        {"alertname": "BillingLow", "severity": "warning", "family": "credit", "provider": "p12"},
        False,
    ),
]


def test_inhibitions(tmp_path):
    tool("amtool")
    alertmanager = Alertmanager(tmp_path, CONFIG)
    now = datetime.now(UTC)
    window = {"startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}
    posted = [{"labels": labels, **window} for source, target, _ in INHIBITIONS for labels in (source, target)]
    alertmanager.start()
    try:
        answer = httpx.post(alertmanager.url + "/api/v2/alerts", json=posted, timeout=5)
        assert answer.status_code == 200, answer.text

        def status() -> dict[tuple[tuple[str, str], ...], list[str]]:
            return {tuple(sorted(a["labels"].items())): a["status"]["inhibitedBy"] for a in alertmanager.alerts()}

        def inhibited(labels: dict[str, str], found: dict[tuple[tuple[str, str], ...], list[str]]) -> bool:
            return bool(found[tuple(sorted(labels.items()))])

        deadline = time.monotonic() + 15
        while True:
            found = status()
            ready = len(found) == len(posted) and all(inhibited(t, found) for _, t, expect in INHIBITIONS if expect)
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(found) == len(posted), found
        for source, target, expect in INHIBITIONS:
            assert inhibited(target, found) is expect, (source, target, found[tuple(sorted(target.items()))])
    finally:
        alertmanager.stop()
