"""Smoke tests: each bench runs end to end at a tiny size and prints its JSON contract as the last stdout line.

These check that the benches work and report sane figures, not how fast anything is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.store.engine import PG_MAX_OVERFLOW, PG_POOL_SIZE
from tests.conftest import fresh_pg_database

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, *args: str, timeout: float = 90.0) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines, f"{module} printed nothing on stdout; stderr: {done.stderr[-2000:]}"
    result = json.loads(lines[-1])
    assert isinstance(result, dict)
    return result


def test_latency_reports_percentiles_of_every_run() -> None:
    result = _run("bench.latency", "--runs", "3", "--gap", "0.2")
    assert {"runs", "p50_ms", "p95_ms", "max_ms", "registry"} <= result.keys()
    assert result["runs"] == 3
    assert result["registry"] == ("docker-registry" if shutil.which("docker-registry") else "sim")
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["max_ms"] < 30_000


def test_latency_falls_back_to_the_sim_registry_on_request() -> None:
    result = _run("bench.latency", "--runs", "2", "--gap", "0.1", "--sim-registry")
    assert result["registry"] == "sim"
    assert result["runs"] == 2


def test_storm_posts_every_incident_once() -> None:
    result = _run("bench.storm", "--pods", "30", "--workloads", "5", "--ramp", "0.2", "--quiet", "1")
    assert {"pods", "workloads", "incidents", "slack_calls", "seconds_to_all_posted", "duplicates"} <= result.keys()
    assert result["pods"] == 30
    assert result["workloads"] == 5
    assert result["duplicates"] == 0
    assert result["unposted"] == 0
    assert result["incidents"] >= 3  # tag, auth and secret each their own; registry causes may group
    assert result["seconds_to_all_posted"] is not None
    # every incident has a parent and a diagnosis reply, all counted
    assert 2 * result["incidents"] <= result["slack_calls"] <= 4 * result["incidents"] + 50


def test_memory_measures_the_bot_with_the_world_in_another_process() -> None:
    result = _run(
        "bench.memory", "--pods", "200", "--failing-fraction", "0.1", "--per-workload", "10", "--steady", "0.5"
    )
    assert {"pods", "failing", "rss_mb", "rss_baseline_mb", "seconds_to_sync"} <= result.keys()
    assert result["pods"] == 200
    assert result["failing"] == 20
    assert result["failing_seen"] == result["failing"]
    assert 0 < result["rss_baseline_mb"] <= result["rss_mb"]
    assert result["seconds_to_sync"] > 0


SCALE_KEYS = {
    "pods",
    "failing",
    "seconds_to_sync",
    "rss_mb",
    "rss_baseline_mb",
    "incidents",
    "slack_calls",
    "duplicates",
    "diagnoses",
    "registry_probes",
    "db_writes",
    "seconds_to_all_posted",
}


def test_scale_storm_and_failover_post_every_incident_once() -> None:
    """A small cluster, a storm over four workloads on two registries, then a second replica takes over."""
    result = _run(
        "bench.scale",
        *("--pods", "600", "--failing", "200", "--per-failing-workload", "50", "--ramp", "1", "--failover"),
        timeout=180,
    )
    assert result.keys() >= SCALE_KEYS
    assert result["pods"] == 600 and result["failing"] == 200
    assert result["distinct_failing_keys"] == result["failing_workloads"] == 4
    assert result["duplicates"] == 0 and result["unposted"] == 0
    assert result["seconds_to_all_posted"] is not None
    assert 1 <= result["incidents"] <= 4
    assert 1 <= result["diagnoses"] <= result["distinct_failing_keys"]
    assert 1 <= result["registry_probes"] <= result["distinct_failing_keys"]
    assert result["failures_seen"] >= result["failing"]
    assert 0 < result["db_writes"] < result["failing"]
    assert result["seconds_takeover_to_watching"] > 0
    assert result["failover_diagnoses"] < result["diagnoses"]  # what the first leader posted is not verified again
    assert 0 < result["rss_baseline_mb"] <= result["rss_mb"]


@pytest.fixture
def own_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one bench run (skips, or fails in CI, when the server is down)."""
    yield from fresh_pg_database("ipd_bench")


@pytest.mark.integration
def test_multicluster_bots_share_postgresql_without_duplicates(own_pg_url: str) -> None:
    """Three bots (three cluster names) on one PostgreSQL database through one storm: each posts its own incidents
    once, and the server sees no more connections than three pools hold."""
    result = _run(
        "bench.multicluster",
        *("--bots", "3", "--pods", "600", "--failing", "200", "--per-failing-workload", "50", "--ramp", "1"),
        *("--database-url", own_pg_url),
        timeout=180,
    )
    assert result["bots"] == 3 and result["failing"] == 200
    assert result["duplicates"] == 0 and result["unposted"] == 0
    assert 3 <= result["incidents"] <= 12
    assert result["diagnoses"] <= 3 * 4 and result["registry_probes"] <= 3 * 4
    assert 3 <= result["pg_connections_peak"] <= 3 * (PG_POOL_SIZE + PG_MAX_OVERFLOW) + 1  # + the migration's
    assert result["pg_deadlocks"] == 0


@pytest.mark.parametrize(
    "module", ["bench.latency", "bench.storm", "bench.memory", "bench.scale", "bench.multicluster", "testkit.simserver"]
)
def test_help_exits_cleanly(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    assert module in done.stdout


@pytest.mark.integration
def test_preflight_finds_every_seeded_latent_failure() -> None:
    if shutil.which("docker-registry") is None or shutil.which("htpasswd") is None:
        pytest.skip("docker-registry and htpasswd are needed (apt-get install docker-registry apache2-utils)")
    result = _run("bench.preflight", "--workloads", "60", "--images", "20", "--seeded-per-kind", "1", timeout=180)
    assert set(result) >= {"workloads", "images", "seeded", "found", "false_positives", "registry_requests", "seconds"}
    assert result["seeded"] == 8 and result["found"] == 8 and result["false_positives"] == 0, result
    assert result["registry_requests"] <= 2 * result["images"]
