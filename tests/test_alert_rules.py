"""The alert rules and the Alertmanager example of alert-rules/: `promtool check rules` and `promtool test rules`,
`amtool check-config` and every route case of alert-rules/tests/routes.yml, the inhibitions on a real Alertmanager,
and the rules' conventions (severity, annotations, runbook anchors in the README, every threshold key used).
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
SEVERITIES = {"low", "medium", "high", "critical"}
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
    """What an alert lacks: an LLM CamelCase name, a severity of the scale, summary and description, and a
    runbook_url whose anchor is a heading of the README."""
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


def test_every_threshold_key_is_used():
    assert threshold_problems(load_rules(), set(DEFAULT_THRESHOLDS)) == []


def test_the_checks_find_a_broken_rule():
    """The convention and threshold checks report a rule broken on purpose."""
    rules = load_rules()
    alert = next(r for r in rules if r.get("alert") == "LLMDailySpendMedium")
    broken = {
        **alert,
        "alert": "dailySpend",
        "labels": {"severity": "warning"},
        "annotations": {"runbook_url": RUNBOOK + "no-such-section"},
        "expr": alert["expr"].replace("spend_daily_medium_usd", "spend_daily_typo_usd"),
    }
    others = [r for r in rules if r.get("alert") != "LLMDailySpendMedium"]
    problems = convention_problems([broken], README.read_text())
    assert len(problems) == 5, problems  # name, severity, summary, description, anchor
    assert "no-such-section" in problems[-1]
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


# --- inhibitions on a real Alertmanager ----------------------------------------------------------------------------


def alert(name: str, severity: str, **scope: str) -> dict[str, str]:
    return {"alertname": name, "severity": severity, **scope}


# (source, target, whether the target is inhibited): every case has scope values of its own.
INHIBITIONS = [
    (alert("LLMBudgetExceeded", "critical", budget="b1"), alert("LLMBudget90Percent", "high", budget="b1"), True),
    (alert("LLMBudgetExceeded", "critical", budget="b2"), alert("LLMBudget75Percent", "medium", budget="b2"), True),
    (alert("LLMBudget90Percent", "high", budget="b3"), alert("LLMBudget75Percent", "medium", budget="b3"), True),
    (alert("LLMBudgetExceeded", "critical", budget="b4"), alert("LLMBudget75Percent", "medium", budget="b5"), False),
    (alert("LLMBudget75Percent", "medium", budget="b6"), alert("LLMBudget90Percent", "high", budget="b6"), False),
    (
        alert("LLMDailySpendCritical", "critical", environment="e1"),
        alert("LLMDailySpendHigh", "high", environment="e1"),
        True,
    ),
    (
        alert("LLMDailySpendCritical", "critical", environment="e2"),
        alert("LLMDailySpendMedium", "medium", environment="e2"),
        True,
    ),
    (
        alert("LLMDailySpendHigh", "high", environment="e3"),
        alert("LLMDailySpendMedium", "medium", environment="e3"),
        True,
    ),
    (
        alert("LLMDailySpendCritical", "critical", environment="e4"),
        alert("LLMDailySpendMedium", "medium", environment="e5"),
        False,
    ),
    (alert("LLMDailySpendTotalCritical", "critical"), alert("LLMDailySpendTotalMedium", "medium"), True),
    (
        alert("LLMErrorRateCritical", "critical", provider="p1", model="m1"),
        alert("LLMErrorRateHigh", "high", provider="p1", model="m1"),
        True,
    ),
    (
        alert("LLMErrorRateFastBurn", "critical", provider="p2", model="m1"),
        alert("LLMErrorRateHigh", "high", provider="p2", model="m1"),
        True,
    ),
    (
        alert("LLMErrorRateCritical", "critical", provider="p3", model="m1"),
        alert("LLMErrorRateHigh", "high", provider="p3", model="m2"),
        False,
    ),
    (
        alert("LLMProviderDown", "critical", provider="p4"),
        alert("LLMModelDown", "critical", provider="p4", model="m1"),
        True,
    ),
    (alert("LLMCreditExhausted", "critical", provider="p5"), alert("LLMCreditLow", "high", provider="p5"), True),
    (alert("LLMCreditExhausted", "critical", provider="p6"), alert("LLMCreditLow", "high", provider="p7"), False),
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
