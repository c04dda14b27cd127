"""Diagnosis scenarios: cause, evidence and fixes (run by a real kubectl) on real and simulated registries.

python -m bench.scenarios [--file tests/scenarios/scenarios.yaml] [--kubectl 1.27 --kubectl 1.33]
Prints the scenarios that missed something on stderr and one JSON line last on stdout:
{"n", "cause_correct", "fix_useful", "fix_applicable", "evidence_false"} (counts of scenarios; evidence_false counts
evidence lines that say what the scenario rules out). See testkit/scenarios.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from testkit.scenarios import report, run_all, summary
from testkit.world import setup_logging

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "tests" / "scenarios" / "scenarios.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--kubectl", action="append", help="kubectl versions to alternate (default 1.27 and 1.33)")
    args = parser.parse_args(argv)
    setup_logging()
    versions = tuple(args.kubectl or ("1.27", "1.33"))
    outcomes = asyncio.run(run_all(args.file, versions))
    text = report(outcomes)
    if text:
        print(text, file=sys.stderr)
    print(json.dumps(summary(outcomes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
