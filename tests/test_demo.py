"""The demo (`make demo`) runs the whole pipeline and ends with every expected thread posted and resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings
from testkit.demo import run_demo


@pytest.mark.slow
async def test_demo_posts_one_thread_per_failing_workload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Four threads (wrong tag, private image, unresolvable host, one registry storm), none for the healthy one."""
    code = await run_demo(Settings(_env_file=None), seconds=50, workdir=str(tmp_path / "demo"))  # type: ignore[call-arg]
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert out.count("image pull failure: `deployment/") == 3
    assert out.count("registry `127.0.0.1:") == 1
    assert "frontend" not in out
    for cause in ("tag_not_found", "pull_secret_not_linked", "dns_failure", "rate_limited"):
        assert f"`{cause}`" in out
    assert "nearest tags: `1.5.0`" in out
    assert "action.executed" in out and "chain: " in out and "intact" in out
    assert "refused: two-person rule" in out  # the developer cannot approve her own request
    assert (tmp_path / "demo" / "imagepull-doctor.db").exists()
