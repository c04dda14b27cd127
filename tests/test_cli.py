"""The `imagepull-doctor` command, run as a child process: help, wrong settings, db upgrade, audit verify, diagnose."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from testkit.kube import objects as k8s
from testkit.kube.apiserver import SimCluster
from testkit.oci.simregistry import SimRegistry

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [[], ["run"], ["demo"], ["diagnose"], ["db"], ["db", "upgrade"], ["audit"], ["audit", "verify"]]
COMMANDS += [["audit", "list"], ["sim"], ["scan"]]


def env(**settings: str) -> dict[str, str]:
    """The environment without the caller's IMAGEPULL_ settings, plus `settings`."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPULL_")}
    out["PYTHONPATH"] = str(ROOT)
    out.update(settings)
    return out


def cli(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot.cli ARGS` (what the imagepull-doctor script runs), in `cwd` (where .env would be read)."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        env=env(**settings),
        cwd=cwd,
        timeout=120,
        check=False,
    )


async def acli(*args: str, cwd: Path, **settings: str) -> tuple[int, str, str]:
    """`cli` without blocking the event loop (a simulated server may be serving in it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(**settings),
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_of_every_command_exits_0(command: list[str], tmp_path: Path) -> None:
    result = cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: imagepull-doctor")
    assert result.stderr == ""


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("imagepull-doctor")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=60, check=False
    )
    assert result.returncode == 0 and "diagnose" in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("IMAGEPULL_DATABASE_URL", "mysql://x", "database_url"),
        ("IMAGEPULL_LOG_LEVEL", "LOUD", "log_level"),
        ("IMAGEPULL_HA__LEASE_DURATION_S", "soon", "ha.lease_duration_s"),
    ],
)
def test_a_wrong_setting_prints_one_line_naming_it_and_exits_2(
    variable: str, value: str, named: str, tmp_path: Path
) -> None:
    result = cli("audit", "verify", cwd=tmp_path, **{variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0] and variable in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("IMAGEPULL_SLACK__ROUTES", "{bad", "slack.routes"),
        ("IMAGEPULL_ACCESS__GRANTS", '{"U1": ["shop:*"]', "access.grants"),
        ("IMAGEPULL_KUBE__EXCLUDE_NAMESPACES", "[kube-system", "kube.exclude_namespaces"),
    ],
)
@pytest.mark.parametrize("command", [["run"], ["audit", "verify"]], ids=" ".join)
def test_a_setting_that_is_not_json_prints_one_line_naming_it(
    variable: str, value: str, named: str, command: list[str], tmp_path: Path
) -> None:
    result = cli(*command, cwd=tmp_path, **{variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0] and variable in lines[0] and "not valid JSON" in lines[0]


@pytest.mark.parametrize("command", [["audit", "verify"], ["audit", "list"]], ids=" ".join)
def test_a_database_that_was_never_migrated_says_to_migrate(command: list[str], tmp_path: Path) -> None:
    result = cli(*command, cwd=tmp_path, IMAGEPULL_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "imagepull-doctor: the database has no tables yet: run `imagepull-doctor db upgrade` first"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:1/imagepull",  # nothing listens on port 1
        "sqlite+aiosqlite:////no/such/folder/x.db",
    ],
)
def test_a_database_that_cannot_be_reached_is_one_line(url: str, tmp_path: Path) -> None:
    result = cli("db", "upgrade", cwd=tmp_path, IMAGEPULL_DATABASE_URL=url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "IMAGEPULL_DATABASE_URL" in lines[0], result.stderr


def test_run_without_a_bot_token_exits_2_naming_it(tmp_path: Path) -> None:
    result = cli("run", cwd=tmp_path, IMAGEPULL_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2
    assert "IMAGEPULL_SLACK__BOT_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_db_upgrade_then_audit_verify_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    first = cli("db", "upgrade", cwd=tmp_path, IMAGEPULL_DATABASE_URL=url)
    assert first.returncode == 0, first.stderr
    assert "newest revision" in first.stdout
    again = cli("db", "upgrade", cwd=tmp_path, IMAGEPULL_DATABASE_URL=url)  # idempotent
    assert again.returncode == 0, again.stderr
    verify = cli("audit", "verify", cwd=tmp_path, IMAGEPULL_DATABASE_URL=url)
    assert verify.returncode == 0, verify.stderr
    assert "audit log intact: 0 rows verified" in verify.stdout
    listed = cli("audit", "list", "--since", "2020-01-01", cwd=tmp_path, IMAGEPULL_DATABASE_URL=url)
    assert listed.returncode == 0 and listed.stdout == ""
    bad_since = cli("audit", "list", "--since", "yesterday", cwd=tmp_path, IMAGEPULL_DATABASE_URL=url)
    assert bad_since.returncode == 2 and len(bad_since.stderr.strip().splitlines()) == 1


def test_diagnose_needs_ns_slash_pod(tmp_path: Path) -> None:
    result = cli("diagnose", "just-a-pod", cwd=tmp_path)
    assert result.returncode == 2 and "NS/POD" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
async def sim() -> AsyncIterator[SimCluster]:
    cluster = SimCluster(bookmark_interval_s=0.5)
    await cluster.start()
    yield cluster
    await cluster.stop()


@pytest.fixture
async def registry() -> AsyncIterator[tuple[SimRegistry, str]]:
    reg = SimRegistry()
    host = await reg.start()
    yield reg, host
    await reg.stop()


async def test_diagnose_a_pod_of_the_simulated_cluster(
    sim: SimCluster, registry: tuple[SimRegistry, str], tmp_path: Path
) -> None:
    reg, host = registry
    reg.add_image("shop/api", "1.5.0")
    image = f"{host}/shop/api:v1.5.0"
    message = k8s.pull_error(image, f'failed to resolve reference "{image}": {image}: not found')
    sim.put(k8s.node("node-a", arch="amd64"))
    sim.put(k8s.service_account("default", "shop"))
    deploy = k8s.deployment("api", "shop", image, 1)
    rs = k8s.replicaset(deploy)
    sim.put(deploy)
    sim.put(rs)
    pod = sim.put(k8s.pod_for(rs, 0, waiting={"api": ("ErrImagePull", message)}, node_name="node-a"))
    sim.put(k8s.failed_pull_event(pod, "api", message))
    name = pod["metadata"]["name"]
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    settings = {
        "IMAGEPULL_KUBE__KUBECONFIG": str(kubeconfig),
        "IMAGEPULL_REGISTRY__INSECURE_REGISTRIES": f'["{host}"]',
        "IMAGEPULL_REGISTRY__ALLOW_NETWORKS": '["127.0.0.0/8"]',
    }
    code, out, err = await acli("diagnose", f"shop/{name}", cwd=tmp_path, **settings)
    assert code == 0, err
    assert f"shop/{name} container api ({image})" in out
    assert "cause: tag_not_found" in out and "1.5.0" in out

    code, out, err = await acli("diagnose", "--json", f"shop/{name}", cwd=tmp_path, **settings)
    assert code == 0, err
    assert '"cause": "tag_not_found"' in out and '"container": "api"' in out

    code, out, err = await acli("diagnose", "shop/no-such-pod", cwd=tmp_path, **settings)
    assert "Traceback" not in err and "pod shop/no-such-pod not found" in err
    assert code == 1


def test_diagnose_with_a_missing_kubeconfig_says_which_setting(tmp_path: Path) -> None:
    result = cli("diagnose", "shop/api-1", cwd=tmp_path, IMAGEPULL_KUBE__KUBECONFIG=str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "IMAGEPULL_KUBE__KUBECONFIG" in result.stderr and "Traceback" not in result.stderr


async def test_sim_serves_the_objects_of_a_file_to_the_bot(registry: tuple[SimRegistry, str], tmp_path: Path) -> None:
    """`imagepull-doctor sim` (test kit) serves objects as `kubectl get -o json` prints them; `diagnose` reads them."""
    reg, host = registry
    reg.add_image("shop/api", "1.5.0")
    image = f"{host}/shop/api:v1.5.0"
    message = k8s.pull_error(image, f'failed to resolve reference "{image}": {image}: not found')
    deploy = k8s.deployment("api", "shop", image, 1)
    rs = k8s.replicaset(deploy)
    pod = k8s.pod_for(rs, 0, waiting={"api": ("ErrImagePull", message)}, node_name="node-a")
    items = [k8s.namespace("shop"), k8s.node("node-a", arch="amd64"), k8s.service_account("default", "shop")]
    items += [deploy, rs, pod]
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    kubeconfig = tmp_path / "sim-kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "sim",
        "--objects",
        str(objects),
        "--kubeconfig",
        str(kubeconfig),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(),
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert ready["objects"] == len(items) and ready["kubeconfig"] == str(kubeconfig)
        settings = {
            "IMAGEPULL_KUBE__KUBECONFIG": str(kubeconfig),
            "IMAGEPULL_REGISTRY__INSECURE_REGISTRIES": f'["{host}"]',
            "IMAGEPULL_REGISTRY__ALLOW_NETWORKS": '["127.0.0.0/8"]',
        }
        code, out, err = await acli("diagnose", f"shop/{pod['metadata']['name']}", cwd=tmp_path, **settings)
        assert code == 0, err
        assert "cause: tag_not_found" in out
        proc.stdin.close()  # the parent goes away: the simulator stops by itself
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_sim_with_a_file_that_is_not_objects_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "List", "items": [{"kind": "Pod"}]}')
    result = cli("sim", "--objects", str(bad), "--kubeconfig", str(tmp_path / "k"), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "metadata.name" in result.stderr


async def test_scan_deep_reports_a_tag_that_retention_deleted(
    sim: SimCluster, registry: tuple[SimRegistry, str], tmp_path: Path
) -> None:
    """`imagepull-doctor scan --deep`: a running Deployment whose tag is gone is at risk (exit 1), in text and JSON."""
    reg, host = registry
    reg.add_image("shop/api", "1.6.0")
    sim.put(k8s.node("node-a", arch="amd64"))
    sim.put(k8s.service_account("default", "shop"))
    deploy = k8s.deployment("api", "shop", f"{host}/shop/api:1.5.0", 1)
    rs = k8s.replicaset(deploy)
    for obj in (deploy, rs, k8s.set_running(k8s.pod_for(rs, 0, node_name="node-a"), "api")):
        sim.put(obj)
    settings = {
        "IMAGEPULL_KUBE__KUBECONFIG": str(sim.write_kubeconfig(tmp_path / "kubeconfig")),
        "IMAGEPULL_REGISTRY__INSECURE_REGISTRIES": f'["{host}"]',
        "IMAGEPULL_REGISTRY__ALLOW_NETWORKS": '["127.0.0.0/8"]',
    }
    code, out, err = await acli("scan", "--deep", cwd=tmp_path, **settings)
    assert code == 1, err
    assert "tag_gone" in out and "shop/deployment/api" in out and "1 workloads at risk" in out
    code, out, err = await acli("scan", "--deep", "--json", "-n", "shop", cwd=tmp_path, **settings)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and lines[0]["risk"] == "tag_gone" and lines[-1]["findings"] == {"tag_gone": 1}
