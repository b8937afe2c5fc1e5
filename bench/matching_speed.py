"""Speed of entity matching: index build time and memory, query latency, per vocabulary size.

In-process, single thread. For each size it builds the index from a snapshot of the generated
vocabulary (bench/matching_eval.py), measuring wall time (best of 3) and the memory the index
keeps (tracemalloc, after the build), then times ``index.match`` on 20-word questions that name
one or two entities with realistic noise (typos, abbreviations, partial names ...): three rounds
over the same questions, reporting the median round's median and p99 (wall time, and CPU time of
the thread, which other processes on a shared machine cannot inflate).

    .venv/bin/python bench/matching_speed.py [--sizes 2000,20000,100000] [--queries 3000]

With ``--freshness N`` it instead runs the demo stack (bridge and two ``vocabsync serve``
instances, demo vocabulary) and times N changes from their commit until both instances match
(or no longer match) them through ``POST /api/vocabulary/match``.

Goals (issue 5): query p99 <= 1 ms at 2k terms and <= 5 ms at 100k (judged on CPU time, so a
busy shared machine does not fail it; wall time is printed beside it); build <= 3 s and index
memory <= 150 MB at 100k. Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Iterable
from typing import Any

from matching_eval import KINDS, QuestionMaker, generate_vocabulary

from vocabsync.config import Settings
from vocabsync.local.demo import DemoStack
from vocabsync.local.demo_data import demo_vocabulary
from vocabsync.matching import MatchIndex, MatchSettings
from vocabsync.vocabulary import Snapshot

QUESTION_WORDS = 20
ROUNDS = 3
"""Timing rounds: build time is the best of them, query figures the median round's."""
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
    index = MatchIndex.build(snapshot, settings)
    gc.collect()
    memory_mb = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    # Build time without tracemalloc's overhead (it slows allocation-heavy code): best of
    # ROUNDS, as usual for timings on a machine that other processes share.
    builds = []
    for _ in range(ROUNDS):
        del index
        gc.collect()
        started = time.perf_counter()
        index = MatchIndex.build(snapshot, settings)
        builds.append(time.perf_counter() - started)
    rng = random.Random(seed)
    maker = QuestionMaker(vocabulary, seed)
    questions = [twenty_words(maker, rng) for _ in range(queries)]
    for question in questions[:200]:  # warm-up
        index.match(question)
    rounds: list[tuple[list[float], list[float]]] = []
    found = 0
    for _ in range(ROUNDS):
        wall: list[float] = []
        cpu: list[float] = []
        for question in questions:
            started, started_cpu = time.perf_counter(), time.thread_time()
            found += len(index.match(question))
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.thread_time() - started_cpu) * 1000)
        rounds.append((wall, cpu))
    return {
        "terms": terms,
        "build_ms": min(builds) * 1000,
        "memory_mb": memory_mb,
        "median_ms": statistics.median(statistics.median(w) for w, _ in rounds),
        "p99_ms": statistics.median(percentile(w, 0.99) for w, _ in rounds),
        "p99_cpu_ms": statistics.median(percentile(c, 0.99) for _, c in rounds),
        "max_ms": min(max(w) for w, _ in rounds),
        "matches_per_question": found / len(questions) / ROUNDS,
    }


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5.0) as response:
        return json.loads(response.read())


def matched_everywhere(urls: list[str], question: str, term: str, present: bool) -> bool:
    for url in urls:
        body = post_json(f"{url}/api/vocabulary/match", {"text": question})
        if (term in {m["value"] for m in body["matches"]}) != present:
            return False
    return True


def freshness(changes: int) -> int:
    """Commit -> matchable through /api/vocabulary/match on both instances of a demo stack."""
    timings: list[float] = []
    with DemoStack(Settings(), seed_vocabulary=demo_vocabulary()) as stack:
        urls = stack.instance_urls
        for index in range(changes):
            name = f"Pasig Freshness Seawall Lot {index // 2}"
            question = f"status of the pasig freshness seawall lot {index // 2} please"
            present = index % 2 == 0  # insert it, then delete it
            if present:
                stack.execute('INSERT INTO "Project"(project_name) VALUES (%s)', (name,))
            else:
                stack.execute('DELETE FROM "Project" WHERE project_name = %s', (name,))
            started = time.perf_counter()
            while not matched_everywhere(urls, question, name, present):
                if time.perf_counter() - started > 10:
                    raise TimeoutError(f"{name!r} not {'matched' if present else 'gone'} in 10 s")
                time.sleep(0.0005)
            timings.append((time.perf_counter() - started) * 1000)
    ms = sorted(timings)
    print(f"changes: {len(ms)} (insert, then delete, a project), 2 API instances, 1 bridge")
    print(
        "commit -> matchable on both instances (ms): "
        f"p50 {percentile(ms, 0.5):.1f}  p95 {percentile(ms, 0.95):.1f}  "
        f"p99 {percentile(ms, 0.99):.1f}  max {ms[-1]:.1f}"
    )
    met = ms[-1] < 1000
    print(f"goal: every change matchable within 1 s: {'met' if met else 'NOT met'}")
    return 0 if met else 1


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,100000")
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--freshness",
        type=int,
        metavar="N",
        help="instead: time N changes from commit to matchable on a demo stack",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.freshness:
        return freshness(args.freshness)
    settings = MatchSettings(_env_file=None)  # type: ignore[call-arg]
    print(
        "| terms | build (ms) | index memory (MB) | query median (ms) | query p99 (ms) "
        "| query p99, CPU time (ms) | query max (ms) | matches / question |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    met = True
    for size in (int(s) for s in args.sizes.split(",")):
        row = measure(size, args.queries, settings, args.seed)
        print(
            f"| {row['terms']:,.0f} | {row['build_ms']:.0f} | {row['memory_mb']:.1f} "
            f"| {row['median_ms']:.3f} | {row['p99_ms']:.3f} | {row['p99_cpu_ms']:.3f} "
            f"| {row['max_ms']:.2f} "
            f"| {row['matches_per_question']:.2f} |",
            flush=True,
        )
        p99_goal = 1.0 if size <= 2000 else 5.0
        met &= row["p99_cpu_ms"] <= p99_goal
        if size >= 100_000:
            met &= row["build_ms"] <= 3000 and row["memory_mb"] <= 150
    print(
        f"\ngoals {'met' if met else 'NOT met'}: p99 (CPU time) <= 1 ms at 2k and <= 5 ms up to "
        "100k; build <= 3 s and memory <= 150 MB at 100k"
        f"\n(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: wall-clock tails grow "
        "when other processes compete for the CPUs; CPU time does not)"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
