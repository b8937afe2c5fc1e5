"""Speed of entity matching: index build time and memory, query latency, per vocabulary size.

In-process, single thread. For each size it builds the index from a snapshot of the generated
vocabulary (bench/matching_eval.py), measuring wall time and the memory the index keeps
(tracemalloc, after the build), then times ``index.match`` on 20-word questions that name one or
two entities with realistic noise (typos, abbreviations, partial names ...).

    .venv/bin/python bench/matching_speed.py [--sizes 2000,20000,100000] [--queries 3000]

Goals (issue 5): query p99 <= 1 ms at 2k terms and <= 5 ms at 100k; build <= 3 s and index
memory <= 150 MB at 100k. Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterable

from matching_eval import KINDS, QuestionMaker, generate_vocabulary

from app.matching import MatchIndex, MatchSettings
from app.vocabulary import Snapshot

QUESTION_WORDS = 20
FILLER_TEXT = (
    "please also check whether the numbers for last month were already approved by the "
    "finance team and tell me if anything looks unusual compared with the plan"
)
FILLER = FILLER_TEXT.split()


def twenty_words(maker: QuestionMaker, rng: random.Random) -> str:
    """A question of exactly 20 words around one or two noisy entities."""
    parts = [maker.question(rng.choice(KINDS)).text]
    if rng.random() < 0.5:
        parts.append("and " + maker.question(rng.choice(KINDS)).text)
    text = " ".join(parts).split()
    if len(text) > QUESTION_WORDS:
        return " ".join(text[:QUESTION_WORDS])
    start = rng.randrange(len(FILLER) - QUESTION_WORDS)
    return " ".join(text + FILLER[start : start + QUESTION_WORDS - len(text)])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(size: int, queries: int, settings: MatchSettings, seed: int) -> dict[str, float]:
    vocabulary = generate_vocabulary(size, seed)
    snapshot = Snapshot.from_lists(vocabulary, version=1)
    terms = sum(len(v) for v in vocabulary.values())
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    index = MatchIndex.build(snapshot, settings)
    build_s = time.perf_counter() - started
    gc.collect()
    memory_mb = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    # Build time again without tracemalloc's overhead (it slows allocation-heavy code).
    del index
    gc.collect()
    started = time.perf_counter()
    index = MatchIndex.build(snapshot, settings)
    build_s = time.perf_counter() - started
    rng = random.Random(seed)
    maker = QuestionMaker(vocabulary, seed)
    questions = [twenty_words(maker, rng) for _ in range(queries)]
    for question in questions[:200]:  # warm-up
        index.match(question)
    timings: list[float] = []
    found = 0
    for question in questions:
        started = time.perf_counter()
        found += len(index.match(question))
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "terms": terms,
        "build_ms": build_s * 1000,
        "memory_mb": memory_mb,
        "median_ms": statistics.median(timings),
        "p99_ms": percentile(timings, 0.99),
        "max_ms": max(timings),
        "matches_per_question": found / len(questions),
    }


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,100000")
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(list(argv) if argv is not None else None)
    settings = MatchSettings(_env_file=None)  # type: ignore[call-arg]
    print(
        "| terms | build (ms) | index memory (MB) | query median (ms) | query p99 (ms) "
        "| query max (ms) | matches / question |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    met = True
    for size in (int(s) for s in args.sizes.split(",")):
        row = measure(size, args.queries, settings, args.seed)
        print(
            f"| {row['terms']:,.0f} | {row['build_ms']:.0f} | {row['memory_mb']:.1f} "
            f"| {row['median_ms']:.3f} | {row['p99_ms']:.3f} | {row['max_ms']:.2f} "
            f"| {row['matches_per_question']:.2f} |",
            flush=True,
        )
        p99_goal = 1.0 if size <= 2000 else 5.0
        met &= row["p99_ms"] <= p99_goal
        if size >= 100_000:
            met &= row["build_ms"] <= 3000 and row["memory_mb"] <= 150
    print(
        f"\ngoals {'met' if met else 'NOT met'}: p99 <= 1 ms at 2k and <= 5 ms up to 100k; "
        "build <= 3 s and memory <= 150 MB at 100k"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
