"""Under CI, a skipped test is a failed test, whatever skipped it.

Rule: when ``FLANNELCAP_REQUIRE_ROOT`` holds a true-ish value (anything but empty, ``0``,
``false``, ``no``, ``off``), every skip — ``pytest.skip()``, a ``skipif`` mark, an
``importorskip`` at import time, a skipped fixture — is reported as a failure naming the
reason. CI must exercise everything; a developer's machine without root may skip.
Loaded by ``tests/conftest.py``, or by ``pytest -p strict_skips`` with ``tests`` on the path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

_FALSE = {"", "0", "false", "no", "off"}


def strict() -> bool:
    """Whether skips are failures in this run."""
    return os.environ.get("FLANNELCAP_REQUIRE_ROOT", "").strip().lower() not in _FALSE


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.longrepr = f"skipped under FLANNELCAP_REQUIRE_ROOT, which makes every skip a failure: {_reason(report)}"
    report.outcome = "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and strict() and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and strict():
        _fail(report)
