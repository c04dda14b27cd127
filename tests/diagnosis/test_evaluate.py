"""Corpus evaluator: summary contract on stdout, confusion on stderr, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from bot.diagnosis.evaluate import main

LINES = [
    {"message": "no matching manifest for linux/arm64 in the manifest list entries", "cause": "platform_mismatch"},
    {
        "message": "manifest for nginx:nope not found: manifest unknown: manifest unknown",
        "cause": "tag_not_found",
        "event_reason": "Failed",
        "source": "x",
    },
    {"message": "toomanyrequests: You have reached your pull rate limit", "cause": "rate_limited"},
    {"message": "gibberish nobody knows", "cause": "auth_failed"},
]


def write(tmp_path: Path, rows: list[dict[str, str]], name: str = "c.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_summary_is_the_last_stdout_line(tmp_path: Path) -> None:
    """The last stdout line holds n, accuracy, per_cause and msgs_per_s; misses are listed on stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = main(["--corpus", str(write(tmp_path, LINES)), "--min-seconds", "0.05"], out, err)
    assert code == 0
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["n"] == 4
    assert summary["accuracy"] == 0.75
    assert summary["per_cause"]["auth_failed"] == {"n": 1, "correct": 0}
    assert summary["per_cause"]["tag_not_found"] == {"n": 1, "correct": 1}
    assert summary["msgs_per_s"] > 0
    table = err.getvalue()
    assert "auth_failed" in table and "other" in table and "<-- miss" in table
    assert "gibberish nobody knows" in table


def test_several_corpora_add_up(tmp_path: Path) -> None:
    """Repeated --corpus options are evaluated together."""
    out = io.StringIO()
    a, b = write(tmp_path, LINES[:2], "a.jsonl"), write(tmp_path, LINES[2:], "b.jsonl")
    assert main(["--corpus", str(a), "--corpus", str(b), "--min-seconds", "0.01"], out, io.StringIO()) == 0
    assert json.loads(out.getvalue().splitlines()[-1])["n"] == 4


def test_unreadable_corpus_exits_2_with_one_line(tmp_path: Path) -> None:
    """A missing file or a bad line gives exit 2 and one clear line on stderr."""
    err = io.StringIO()
    assert main(["--corpus", str(tmp_path / "missing.jsonl")], io.StringIO(), err) == 2
    assert err.getvalue().count("\n") == 1 and "missing.jsonl" in err.getvalue()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"message": "x", "cause": "other"}\nnot json\n', encoding="utf-8")
    err = io.StringIO()
    assert main(["--corpus", str(bad)], io.StringIO(), err) == 2
    assert "bad.jsonl:2" in err.getvalue()


def test_module_runs_as_a_program(tmp_path: Path) -> None:
    """`python -m bot.diagnosis.evaluate` prints the JSON summary as its last line."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.diagnosis.evaluate",
            "--corpus",
            str(write(tmp_path, LINES)),
            "--min-seconds",
            "0.05",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n"] == 4
