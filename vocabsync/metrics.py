"""Prometheus metrics of the bridge and the API instances.

The components keep plain counters in their ``stats`` (cheap to bump, easy to test); a collector
turns them into Prometheus families at scrape time, so there is one source of truth. Durations
are histograms observed as they happen. Each component has its own registry, so several run in
one process (tests) without clashing; ``/metrics`` and the bridge's ``--metrics-port`` serve it.

Names follow Prometheus conventions (``vocabsync_..._total`` counters, ``_seconds`` durations);
the README's metrics table, deploy/prometheus/alerts.yml and the Grafana dashboard use them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from vocabsync.vocabulary import Snapshot

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
LINKS: Final = ("postgres", "redis")
READ_SOURCES: Final = ("memory", "redis", "database")
BAD_INPUT_KINDS: Final = ("malformed_message", "corrupted_value", "unknown_table")
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@dataclass
class LinkStats:
    """Per-link health, counted the same way by the bridge and the instances."""

    up: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(LINKS, False))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LINKS, 0))
    reconnects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LINKS, 0))
    bad_input: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BAD_INPUT_KINDS, 0))


class Observable(Protocol):
    """What a component exposes for the collector."""

    @property
    def metric_values(self) -> MetricValues: ...


@dataclass(frozen=True)
class MetricValues:
    """A consistent read of a component's state at scrape time."""

    component: str
    running: bool
    links: LinkStats
    snapshot: Snapshot
    counters: Mapping[str, int]
    gauges: Mapping[str, float]
    reads: Mapping[str, int] = field(default_factory=dict)


COUNTER_HELP: Final[Mapping[str, str]] = {
    "vocabsync_database_loads_total": "Vocabulary queries run against PostgreSQL.",
    "vocabsync_notifications_received_total": "PostgreSQL notifications the bridge received.",
    "vocabsync_messages_published_total": "Messages the bridge published on the Redis channel.",
    "vocabsync_messages_received_total": "Messages an instance received on the Redis channel.",
}
GAUGE_HELP: Final[Mapping[str, str]] = {
    "vocabsync_bridge_active": "1 on the bridge that holds leadership and publishes, else 0.",
    "vocabsync_fallback": "1 while an instance cannot hear Redis and reads PostgreSQL instead.",
    "vocabsync_trigger_failures": (
        "Notifications the database trigger failed to send (from its failure log table)."
    ),
}


class StatsCollector(Collector):
    """Renders one component's :class:`MetricValues` as Prometheus families."""

    def __init__(self, source: Observable) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        values = self.source.metric_values
        up = GaugeMetricFamily("vocabsync_up", "1 while this component runs.", labels=["component"])
        up.add_metric([values.component], 1 if values.running else 0)
        yield up
        yield from _labelled_gauge(
            "vocabsync_link_up",
            "1 while the link is connected and answering.",
            "link",
            {k: float(v) for k, v in values.links.up.items()},
        )
        yield from _labelled_counter(
            "vocabsync_connection_errors_total",
            "Failures of a link (connect, query or command).",
            "link",
            values.links.errors,
        )
        yield from _labelled_counter(
            "vocabsync_reconnects_total",
            "Successful reconnections after a failure.",
            "link",
            values.links.reconnects,
        )
        yield from _labelled_counter(
            "vocabsync_bad_input_total",
            "Malformed messages, corrupted snapshot values and unknown tables, contained.",
            "kind",
            values.links.bad_input,
        )
        if values.reads:
            yield from _labelled_counter(
                "vocabsync_reads_total",
                "Vocabulary reads served, by where the answer came from (hit rate, fallback).",
                "source",
                values.reads,
            )
        for name, count in values.counters.items():
            family = CounterMetricFamily(name.removesuffix("_total"), COUNTER_HELP[name])
            family.add_metric([], count)
            yield family
        for name, gauge in values.gauges.items():
            yield GaugeMetricFamily(name, GAUGE_HELP[name], value=gauge)
        snapshot = values.snapshot
        yield GaugeMetricFamily(
            "vocabsync_snapshot_version",
            "Version (database state) of the snapshot held; equal everywhere when in sync.",
            value=snapshot.version,
        )
        yield GaugeMetricFamily(
            "vocabsync_snapshot_age_seconds",
            "Seconds since the held snapshot was loaded from PostgreSQL.",
            value=max(0.0, time.time() - snapshot.refreshed_at) if snapshot.refreshed_at else 0.0,
        )
        yield from _labelled_gauge(
            "vocabsync_vocabulary_terms",
            "Terms per vocabulary field.",
            "field",
            {name: float(len(terms)) for name, terms in snapshot.terms.items()},
        )


def _labelled_counter(
    name: str, documentation: str, label: str, values: Mapping[str, int]
) -> Iterable[Metric]:
    family = CounterMetricFamily(name.removesuffix("_total"), documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    yield family


def _labelled_gauge(
    name: str, documentation: str, label: str, values: Mapping[str, float]
) -> Iterable[Metric]:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    yield family


class Metrics:
    """A component's registry: its stats collector plus the histograms it observes."""

    def __init__(self, source: Observable) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StatsCollector(source))
        self.refresh_seconds = Histogram(
            "vocabsync_refresh_duration_seconds",
            "Time to refresh the vocabulary, by trigger (startup, event, resync, manual, ...).",
            ["trigger"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refresh_failures = Counter(
            "vocabsync_refresh_failures_total",
            "Refreshes that failed (the previous snapshot stayed in use), by trigger.",
            ["trigger"],
            registry=self.registry,
        )
        self.propagation_seconds = Histogram(
            "vocabsync_propagation_seconds",
            "From the bridge loading a change (just after its commit) to this process serving "
            "it; assumes synchronised clocks across hosts.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def time_refresh(self, trigger: str) -> Callable[[bool], None]:
        """Start timing a refresh; call the result with whether it succeeded."""
        started = time.perf_counter()

        def done(ok: bool) -> None:
            if ok:
                self.refresh_seconds.labels(trigger).observe(time.perf_counter() - started)
            else:
                self.refresh_failures.labels(trigger).inc()

        return done

    def render(self) -> bytes:
        return generate_latest(self.registry)
