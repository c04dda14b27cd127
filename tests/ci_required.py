"""pytest plugin: in CI (env CI set), a skipped `integration` test is a failure, so a missing service cannot hide.

Loaded from pyproject's addopts (`-p tests.ci_required`).
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if _ci() and report.skipped and item.get_closest_marker("integration") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"integration test skipped in CI (CI={os.environ.get('CI')}): {reason}"
