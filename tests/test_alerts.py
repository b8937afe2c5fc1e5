"""Alert rules, their unit tests, the scrape configuration and the Grafana dashboard.

``promtool`` (Debian's ``prometheus`` package) checks the rules and runs
deploy/prometheus/alerts_test.yml, which makes every alert fire and clear. Every metric that an
alert or a dashboard query names is checked against a real scrape of an API instance and a
bridge, so a renamed metric cannot silently leave an alert that never fires.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.fixtures_app import derive, execute
from tests.test_api import running_client
from tests.test_deploy import DEPLOY, REPO, debian_binary_extracted
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.main import create_app
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge

PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "vocabsync-dashboard.json"
OPERATIONS = REPO / "docs" / "operations.md"

DESIGN_ALERTS = {
    "VocabsyncBridgeDown",  # bridge service down for > 5 minutes
    "VocabsyncRedisUnavailable",  # Redis unavailable for > 5 minutes
    "VocabsyncSlowRefresh",  # cache refresh latency > 5 seconds
    "VocabsyncHighFallbackShare",  # fallback mode > 10 % of requests
    "VocabsyncTriggerFailures",  # trigger execution failures
}
ISSUE_ALERTS = {"VocabsyncSnapshotVersionBehind", "VocabsyncNoActiveBridge"}
TARGET_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every scraped series (they are not in /metrics)."""
SYNTHETIC_METRICS = {"up"}
"""Series Prometheus itself records for each scrape target."""


@pytest.fixture(scope="session")
def promtool() -> str:
    return str(debian_binary_extracted("promtool", "prometheus"))


def run_promtool(promtool: str, *args: str, cwd: Path = PROMETHEUS) -> str:
    result = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title/refId, expr) of every query in the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"{panel['title']}/{target['refId']}", target["expr"]))
    return queries


# --------------------------------------------------------------------------------------------
# promtool
# --------------------------------------------------------------------------------------------


def test_alert_rules_and_scrape_config_pass_promtool_checks(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", ALERTS.name)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output
    run_promtool(promtool, "check", "config", "prometheus.yml")


def test_promtool_unit_tests_fire_and_clear_every_alert(promtool: str) -> None:
    output = run_promtool(promtool, "test", "rules", ALERTS_TEST.name)
    assert "SUCCESS" in output

    # Every alert has a case where it fires and, later in the same series, clears.
    names = {str(rule["alert"]) for rule in alert_rules()}
    fired: set[str] = set()
    cleared: set[str] = set()
    for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        checks = sorted(case["alert_rule_test"], key=lambda c: _minutes(c["eval_time"]))
        firing_at: dict[str, float] = {}
        for check in checks:
            name = check["alertname"]
            if check.get("exp_alerts"):
                fired.add(name)
                firing_at.setdefault(name, _minutes(check["eval_time"]))
            elif name in firing_at:
                cleared.add(name)
    assert fired == names, f"never fired in a test: {names - fired}"
    assert cleared == names, f"never cleared in a test: {names - cleared}"


def _minutes(duration: str) -> float:
    value, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()  # type: ignore[union-attr]
    return int(value) * {"s": 1 / 60, "m": 1, "h": 60}[unit]


def test_alerts_cover_the_design_document_and_the_issue() -> None:
    rules = {str(rule["alert"]): rule for rule in alert_rules()}
    assert set(rules) >= DESIGN_ALERTS | ISSUE_ALERTS
    assert rules["VocabsyncBridgeDown"]["for"] == "5m"
    assert rules["VocabsyncRedisUnavailable"]["for"] == "5m"
    assert "> 5" in str(rules["VocabsyncSlowRefresh"]["expr"])
    assert "> 0.10" in str(rules["VocabsyncHighFallbackShare"]["expr"])
    for name, rule in rules.items():
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict)
        assert labels["severity"] in ("warning", "critical"), name
        assert isinstance(annotations, dict)
        assert annotations["summary"], name


def test_every_alert_has_a_runbook_section() -> None:
    text = OPERATIONS.read_text()
    anchors = {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        path, _, anchor = str(annotations["runbook"]).partition("#")
        assert (REPO / path).resolve() == OPERATIONS.resolve()
        assert anchor in anchors, f"docs/operations.md has no section #{anchor}"
        section = text.split(f"### {rule['alert']}", 1)[1].split("\n### ", 1)[0]
        assert "What to do" in section, f"runbook of {rule['alert']} says what to do"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expr}
        for index, (_, expr) in enumerate(dashboard_queries())
    ]
    (tmp_path / "dashboard.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    output = run_promtool(promtool, "check", "rules", "dashboard.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in output


def test_dashboard_layout_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"panel {panel['title']} overlaps another"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]


# --------------------------------------------------------------------------------------------
# Metric names against a real scrape
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      |(?P<range>\[[^\]]*\])
      |(?P<number>\d+(?:\.\d+)?(?:ms|[smhdwy])?)
      |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      |(?P<other>\S)""",
    re.VERBOSE,
)
_MATCHER = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?""")
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _GROUPING | {"and", "or", "unless", "offset", "bool", "inf", "nan"}


@dataclass
class Selector:
    name: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Query:
    selectors: list[Selector]
    grouping_labels: set[str]


def parse_promql(expr: str) -> Query:
    """Metric selectors (name and label matchers) and grouping labels of a PromQL expression."""
    selectors: list[Selector] = []
    grouping: set[str] = set()
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:  # whitespace
            position += 1
            continue
        position = match.end()
        ident = match.group("ident")
        if ident is None:
            if match.group("other") == "{":  # a selector without a name
                raise AssertionError(f"name-less selector in {expr!r}")
            continue
        rest = expr[position:].lstrip()
        if ident in _GROUPING:
            if rest.startswith("("):
                labels, _, _ = rest[1:].partition(")")
                grouping |= {label.strip() for label in labels.split(",") if label.strip()}
                position = expr.index(")", position) + 1
            continue
        if ident in _KEYWORDS or rest.startswith("(") or re.match(r"(by|without)\b", rest):
            continue  # operator, or function/aggregation name (``sum by (x) (...)``)
        selector = Selector(ident)
        if rest.startswith("{"):
            start = expr.index("{", position)
            end = expr.index("}", start)
            body = expr[start + 1 : end]
            selector.matchers = [(m[0], m[1], m[2]) for m in _MATCHER.findall(body)]
            assert len(selector.matchers) == body.count('"') // 2, f"unparsed matchers: {body}"
            position = end + 1
        selectors.append(selector)
    return Query(selectors, grouping)


def test_promql_parser_finds_selectors_and_grouping_labels() -> None:
    query = parse_promql(
        'histogram_quantile(0.95, sum by (le, trigger) (rate(a_bucket{x="1", y!~"z"}[5m])))'
        " / on (job) group_left b offset 1m > bool 0.5 and max without (i) (c) or vector(0)"
    )
    assert [(s.name, s.matchers) for s in query.selectors] == [
        ("a_bucket", [("x", "=", "1"), ("y", "!~", "z")]),
        ("b", []),
        ("c", []),
    ]
    assert query.grouping_labels == {"le", "trigger", "job", "i"}


def all_queries() -> Iterator[tuple[str, str]]:
    for rule in alert_rules():
        yield f"alert {rule['alert']}", str(rule["expr"])
    for title, expr in dashboard_queries():
        yield f"dashboard {title}", expr


@dataclass
class Exported:
    """What a real /metrics scrape holds: sample names and each sample's labels."""

    names: set[str] = field(default_factory=set)
    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            suffixes = {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
            }.get(family.type, ("",))
            self.names |= {family.name + suffix for suffix in suffixes}
            sample: Sample
            for sample in family.samples:
                self.names.add(sample.name)
                self.samples.setdefault(sample.name, []).append(dict(sample.labels))


async def test_every_metric_in_alerts_and_dashboard_is_exported(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    exported = Exported()
    async with running_client(create_app(settings)) as client:
        # Real traffic first, so labelled series (trigger=..., source=...) exist.
        execute(db_url, """INSERT INTO "Project"(project_name, location) VALUES ('M', 'Pasig')""")

        async def arrived() -> bool:
            return "M" in (await client.get("/api/vocabulary")).json()["projects"]

        await wait_until_async(arrived, message="change reached the instance")
        assert (await client.post("/api/vocabulary/refresh")).status_code == 200
        exported.add((await client.get("/metrics")).text)
    exported.add(bridge.metrics.render().decode())
    # An instance whose database is gone: its failed refresh is counted too.
    broken = derive(settings, database_url="postgresql://postgres@127.0.0.1:1/gone")
    async with running_client(create_app(broken)) as client:
        assert (await client.post("/api/vocabulary/refresh")).status_code == 500
        exported.add((await client.get("/metrics")).text)

    for where, expr in all_queries():
        query = parse_promql(expr)
        assert query.selectors, f"{where}: no metric in {expr!r}"
        labels_seen = set(TARGET_LABELS) | {"le"}
        for selector in query.selectors:
            if selector.name in SYNTHETIC_METRICS:
                assert {m[0] for m in selector.matchers} <= TARGET_LABELS, where
                continue
            assert selector.name in exported.names, f"{where}: {selector.name} is not exported"
            samples = exported.samples.get(selector.name, [])
            for sample in samples:
                labels_seen |= set(sample)
            for label, op, value in selector.matchers:
                if label in TARGET_LABELS:
                    continue
                assert samples, f"{where}: {selector.name} has no sample to match {label}"
                if op == "=":
                    assert any(s.get(label) == value for s in samples), (
                        f"{where}: no {selector.name}{{{label}={value!r}}} in "
                        f"{sorted({s.get(label, '') for s in samples})}"
                    )
                else:
                    assert any(label in s for s in samples), (
                        f"{where}: {selector.name} has no {label}"
                    )
        unknown = query.grouping_labels - labels_seen
        assert not unknown, f"{where}: groups by labels no metric has: {unknown}"
