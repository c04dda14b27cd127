"""The diagnosis scenario suite (tests/scenarios/scenarios.yaml, run by testkit/scenarios.py) in `make test`:
real docker-registry processes, Docker Hub-like and token registries, the simulated API server and a real kubectl
(oldest and newest installed) executing every mutating fix command the bot posts."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from testkit.scenarios import find_kubectl, report, run_all, summary

FILE = Path(__file__).with_name("scenarios.yaml")


@pytest.fixture(scope="module")
def outcomes() -> list:  # type: ignore[type-arg]
    for tool in ("docker-registry", "htpasswd", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not on PATH (apt-get install docker-registry apache2-utils openssl)")
    if not (find_kubectl("1.27") or find_kubectl("1.33")):
        pytest.skip("no kubectl.1.27 / kubectl.1.33 installed")
    return asyncio.run(run_all(FILE))


def test_at_least_forty_scenarios(outcomes: list) -> None:  # type: ignore[type-arg]
    """The suite covers every point of the issue with at least 40 real-world situations."""
    assert len(outcomes) >= 40


def test_every_scenario_is_diagnosed_and_fixed(outcomes: list) -> None:  # type: ignore[type-arg]
    """Right cause, the evidence it must show, no false line, every fix command runs, and the pull then works."""
    assert report(outcomes) == ""
    line = summary(outcomes)
    assert line["evidence_false"] == 0
    assert line["cause_correct"] == line["fix_useful"] == line["fix_applicable"] == line["n"]


def test_both_kubectl_versions_ran(outcomes: list) -> None:  # type: ignore[type-arg]
    """The oldest and the newest kubectl both executed fixes."""
    used = {o.kubectl for o in outcomes if o.commands}
    expected = {f"kubectl.{v}" for v in ("1.27", "1.33") if find_kubectl(v)}
    assert used == expected
