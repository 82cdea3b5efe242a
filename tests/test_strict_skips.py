"""Under CI every skip is a failure, whatever raised it; elsewhere a skip stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SKIPPING = """
import pytest

def test_plain_skip():
    pytest.skip("no reason at all")

@pytest.mark.skipif(True, reason="marked")
def test_marked():
    pass

def test_passes():
    assert 1 + 1 == 2
"""


def _run(tmp_path: Path, value: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "FLANNELCAP_REQUIRE_ROOT"}
    if value is not None:
        env["FLANNELCAP_REQUIRE_ROOT"] = value
    env["PYTHONPATH"] = str(REPO / "tests")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "strict_skips", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("value", ["1", "yes"])
def test_any_true_value_turns_every_skip_into_a_failure(tmp_path: Path, value: str) -> None:
    done = _run(tmp_path, value)
    assert done.returncode == 1, done.stdout
    # A skip in the test's body fails the test; a skip mark fails its setup (an error).
    assert "1 failed, 1 passed, 1 error" in done.stdout
    assert "every skip a failure: no reason at all" in done.stdout
    assert "every skip a failure: marked" in done.stdout


@pytest.mark.parametrize("value", [None, "off"])
def test_without_it_a_skip_stays_a_skip(tmp_path: Path, value: str | None) -> None:
    done = _run(tmp_path, value)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 2 skipped" in done.stdout


def test_a_module_skipped_at_import_fails_too(tmp_path: Path) -> None:
    (tmp_path / "test_module.py").write_text('import pytest\npytest.importorskip("no_such_module_here")\n')
    done = _run(tmp_path, "1")
    assert done.returncode == 2, done.stdout  # collection interrupted
    assert "could not import 'no_such_module_here'" in done.stdout
