"""Classifier speed: `python -m bench.classify [--seconds S]` prints one JSON object as its last line.

Classifies every message of tests/corpus/*.jsonl repeatedly on one core for at least S seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bot.diagnosis.evaluate import load, throughput

CORPUS_DIR = Path(__file__).resolve().parent.parent / "tests" / "corpus"


def main() -> None:
    """Measure messages per second over the committed corpora."""
    parser = argparse.ArgumentParser(prog="python -m bench.classify")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    samples = [s for path in sorted(CORPUS_DIR.glob("*.jsonl")) for s in load(path)]
    rate = throughput(samples, args.seconds)
    print(json.dumps({"messages": len(samples), "msgs_per_s": round(rate, 1)}))


if __name__ == "__main__":
    main()
