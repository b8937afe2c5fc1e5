"""In-process costs at a million terms: a read, a membership test, applying one delta.

No network: the cache's state is set directly, as the log follower would set it. Prints a table.

    .venv/bin/python bench/reads.py [--terms 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit

from vocabsync.config import Settings
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.vocabulary import Delta, FieldDelta, Snapshot


def build(terms: int) -> Snapshot:
    half = terms // 2
    return Snapshot.from_lists(
        {
            "projects": [f"Riverbank Development Phase {i}" for i in range(half)],
            "expense_files": [f"expense-report-{i}.xlsx" for i in range(terms - half)],
            "expense_categories": [f"Category {i}" for i in range(1000)],
        },
        version=1,
        identity="bench",
    )


def per_call_ns(statement: object, number: int) -> float:
    timer = timeit.Timer(statement)  # type: ignore[arg-type]
    return min(timer.repeat(repeat=5, number=number)) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--terms", type=int, default=1_000_000)
    args = parser.parse_args()

    started = time.perf_counter()
    snapshot = build(args.terms)
    build_s = time.perf_counter() - started
    cache = RedisVocabularyCache(Settings(_env_file=None))  # type: ignore[call-arg]
    cache.state.adopt(snapshot, "1-0", "redis")
    cache.state.source = "redis"
    cache._follower = type("Following", (), {"running": True})()  # type: ignore[assignment]

    read_ns = per_call_ns(cache.get_vocabulary, 100_000)
    terms = cache.get_vocabulary()["projects"]
    contains_ns = per_call_ns(lambda: "Riverbank Development Phase 4242" in terms, 100_000)

    applies: list[float] = []
    current = snapshot
    for index in range(200):
        delta = Delta({"projects": FieldDelta((f"New Tower {index}",), ())})
        started = time.perf_counter()
        current = current.apply(delta, version=2 + index)
        applies.append((time.perf_counter() - started) * 1e6)
    applies.sort()

    started = time.perf_counter()
    snapshot.get("projects").to_json()
    sort_s = time.perf_counter() - started
    kept: list[float] = []
    encoded: list[float] = []
    current = snapshot
    for index in range(200):
        delta = Delta({"projects": FieldDelta((f"Zeta {index}",), ())})
        previous = current  # freed after the timing: unmapping its JSON is not the apply's cost
        started = time.perf_counter()
        current = current.apply(delta, version=3 + index)
        kept.append((time.perf_counter() - started) * 1e6)
        del previous
        started = time.perf_counter()
        current.get("projects").to_json()
        encoded.append((time.perf_counter() - started) * 1000)
    kept.sort()
    encoded.sort()

    print(f"| figure ({args.terms:,} terms) | value |")
    print("| --- | --- |")
    print(f"| build the snapshot | {build_s:.2f} s |")
    print(f"| `get_vocabulary()` | {read_ns:.0f} ns per call |")
    print(f"| `term in vocab['projects']` | {contains_ns:.0f} ns |")
    p50 = statistics.median(applies)
    p99 = applies[int(len(applies) * 0.99) - 1]
    print(
        f"| apply a one-term delta (new immutable version) | p50 {p50:.1f} µs, p99 {p99:.1f} µs |"
    )
    print(f"| first sorted JSON of a field (once per process) | {sort_s * 1000:.0f} ms |")
    print(
        "| apply a one-term delta, sorted order kept up to date | "
        f"p50 {statistics.median(kept):.1f} µs, p99 {kept[197]:.1f} µs |"
    )
    print(
        "| sorted JSON of the field after a one-term change | "
        f"p50 {statistics.median(encoded):.1f} ms, p99 {encoded[197]:.1f} ms |"
    )


if __name__ == "__main__":
    main()
