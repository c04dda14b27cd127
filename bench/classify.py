"""Classifier speed: `python -m bench.classify [--seconds S] [--runs N]` prints one JSON object as its last line.

Classifies every message of tests/corpus/*.jsonl repeatedly on one core, N runs of at least S seconds each, and
reports the median and best rate with the 1-minute load average (the box has other work; read figures with it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from bot.diagnosis.evaluate import load, throughput

CORPUS_DIR = Path(__file__).resolve().parent.parent / "tests" / "corpus"


def main() -> None:
    """Measure messages per second over the committed corpora."""
    parser = argparse.ArgumentParser(prog="python -m bench.classify")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum length of one run")
    parser.add_argument("--runs", type=int, default=5, help="number of runs")
    args = parser.parse_args()
    samples = [s for path in sorted(CORPUS_DIR.glob("*.jsonl")) for s in load(path)]
    throughput(samples, 0.2)  # warm up
    load_before = os.getloadavg()[0]
    rates = [throughput(samples, args.seconds) for _ in range(max(1, args.runs))]
    result = {
        "messages": len(samples),
        "runs": len(rates),
        "msgs_per_s": round(statistics.median(rates), 1),
        "best_msgs_per_s": round(max(rates), 1),
        "worst_msgs_per_s": round(min(rates), 1),
        "loadavg_1m": round(max(load_before, os.getloadavg()[0]), 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
