"""Corpus evaluator: `python -m bot.diagnosis.evaluate --corpus FILE.jsonl [--corpus FILE2 ...]`.

Reads JSON lines `{"message", "cause", "event_reason"?}`, classifies each, prints a confusion table and
the misclassified messages on stderr, and as the last line of stdout one JSON object
`{"n", "accuracy", "per_cause": {id: {"n", "correct"}}, "msgs_per_s"}` (contract: docs/CONTRACTS.md).
Exit 0 whatever the accuracy; exit 2 with one line on stderr when a corpus cannot be read.

The pure part (`score`, `confusion`, `throughput`) takes samples; only `main` touches files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bot.diagnosis.classify import classify
from bot.model import Cause

SHOWN_MISSES = 40
SHOWN_CHARS = 240


class CorpusError(Exception):
    """A corpus file cannot be read or holds a line that is not a sample."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One corpus line."""

    message: str
    cause: str
    event_reason: str | None = None
    waiting_reason: str | None = None
    where: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """One sample with the cause the classifier gave."""

    sample: Sample
    got: str

    @property
    def correct(self) -> bool:
        """Whether the classifier agreed with the corpus."""
        return self.got == self.sample.cause


def parse_lines(lines: Sequence[str], where: str) -> list[Sample]:
    """Samples from JSON lines; blank lines are skipped; a bad line raises CorpusError."""
    out: list[Sample] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(f"{where}:{number}: not JSON ({err.msg})") from err
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("message"), str)
            or not isinstance(obj.get("cause"), str)
        ):
            raise CorpusError(f'{where}:{number}: needs string fields "message" and "cause"')
        reason = obj.get("event_reason")
        waiting = obj.get("waiting_reason")
        out.append(
            Sample(
                message=obj["message"],
                cause=obj["cause"],
                event_reason=reason if isinstance(reason, str) else None,
                waiting_reason=waiting if isinstance(waiting, str) else None,
                where=f"{where}:{number}",
            )
        )
    return out


def load(path: Path) -> list[Sample]:
    """Samples of one corpus file; CorpusError when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CorpusError(f"cannot read corpus {path}: {err}") from err
    return parse_lines(text.splitlines(), str(path))


def run(samples: Sequence[Sample]) -> list[Result]:
    """Classify every sample once."""
    return [Result(s, str(classify(s.message, s.event_reason, s.waiting_reason).cause)) for s in samples]


def score(results: Sequence[Result], msgs_per_s: float) -> dict[str, object]:
    """The contract's summary object."""
    per_cause: dict[str, dict[str, int]] = {}
    for r in results:
        entry = per_cause.setdefault(r.sample.cause, {"n": 0, "correct": 0})
        entry["n"] += 1
        entry["correct"] += int(r.correct)
    n = len(results)
    correct = sum(r.correct for r in results)
    return {
        "n": n,
        "accuracy": round(correct / n, 4) if n else 0.0,
        "per_cause": dict(sorted(per_cause.items())),
        "msgs_per_s": round(msgs_per_s, 1),
    }


def confusion(results: Sequence[Result]) -> str:
    """A table of expected vs got with only the non-zero cells, then the misclassified messages."""
    cells = Counter((r.sample.cause, r.got) for r in results)
    lines = [f"{'expected':<30} {'got':<30} {'count':>5}"]
    for (expected, got), count in sorted(cells.items()):
        mark = "" if expected == got else "  <-- miss"
        lines.append(f"{expected:<30} {got:<30} {count:>5}{mark}")
    misses = [r for r in results if not r.correct]
    if misses:
        lines.append(f"\nmisclassified: {len(misses)}")
        for r in misses[:SHOWN_MISSES]:
            text = r.sample.message.replace("\n", " ")
            if len(text) > SHOWN_CHARS:
                text = text[: SHOWN_CHARS - 3] + "..."
            lines.append(f"- {r.sample.where} expected {r.sample.cause} got {r.got}: {text}")
        if len(misses) > SHOWN_MISSES:
            lines.append(f"... and {len(misses) - SHOWN_MISSES} more")
    return "\n".join(lines)


def throughput(samples: Sequence[Sample], min_seconds: float = 1.0) -> float:
    """Messages classified per second, over repeated passes of the whole corpus for at least `min_seconds`."""
    if not samples:
        return 0.0
    done = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < min_seconds:
        for s in samples:
            classify(s.message, s.event_reason, s.waiting_reason)
        done += len(samples)
        elapsed = time.perf_counter() - start
    return done / elapsed


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Command line entry point; returns the exit code."""
    stdout = out or sys.stdout
    stderr = err or sys.stderr
    parser = argparse.ArgumentParser(prog="python -m bot.diagnosis.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", required=True, type=Path, help="JSON Lines corpus (repeatable)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time spent measuring throughput")
    args = parser.parse_args(argv)
    samples: list[Sample] = []
    try:
        for path in args.corpus:
            samples.extend(load(path))
    except CorpusError as error:
        print(f"error: {error}", file=stderr)
        return 2
    unknown = sorted({s.cause for s in samples} - {str(c) for c in Cause})
    if unknown:
        print(f"warning: corpus causes not in the catalogue: {', '.join(unknown)}", file=stderr)
    results = run(samples)
    print(confusion(results), file=stderr)
    summary = score(results, throughput(samples, args.min_seconds))
    print(json.dumps(summary, sort_keys=False), file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
