"""Shared fixtures: the sample captures, and a real namespace lab for tests that need root.

A test that needs root, the kernel's namespaces or a real tool (tcpdump, tshark) calls
``require(...)``: on a developer's machine without them it is skipped, but where
``FLANNELCAP_REQUIRE_ROOT`` is set (CI) the same condition fails the test. Any other skip
fails there too (``strict_skips``), so nothing that CI must exercise is skipped silently.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from strict_skips import (  # the hooks are imported to be active in this directory
    pytest_make_collect_report,  # noqa: F401
    pytest_runtest_makereport,  # noqa: F401
    strict,
)

from flannelcap.lab import Lab, LabSpec, teardown

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_pcaps"


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when ``condition`` does not hold."""
    if condition:
        return
    if strict():
        pytest.fail(f"FLANNELCAP_REQUIRE_ROOT is set but {reason}")
    pytest.skip(reason)


def require_root_lab() -> None:
    """The test builds a lab: root and the ip/bridge/ethtool commands are needed."""
    require(os.geteuid() == 0, "needs root to create network namespaces")
    for tool in ("ip", "bridge", "ethtool"):
        require(shutil.which(tool) is not None, f"needs the {tool!r} command")


def require_tool(tool: str) -> None:
    """The test runs ``tool`` for real."""
    require(shutil.which(tool) is not None, f"needs {tool!r} installed")


def manifest() -> list[dict[str, object]]:
    """The entries of sample_pcaps/manifest.jsonl."""
    lines = (SAMPLES / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def every_sample_pcap() -> list[str]:
    """Every recorded capture under sample_pcaps/, the journeys' and services' included, as
    paths relative to it."""
    top = [str(e["file"]) for e in manifest()]
    nested = sorted(
        str(p.relative_to(SAMPLES))
        for directory in ("journeys", "services", "backends")
        for p in (SAMPLES / directory).rglob("*.pcap")
    )
    return top + nested


@pytest.fixture(scope="session")
def samples() -> dict[str, dict[str, object]]:
    """Manifest entries of the recorded sample captures, by capture name (file stem)."""
    return {str(e["file"]).removesuffix(".pcap"): e for e in manifest()}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A freshly built 3-node lab with its own prefix, removed afterwards (also on failure)."""
    require_root_lab()
    prefix = "t" + uuid.uuid4().hex[:6]
    os.environ.setdefault("FLANNELCAP_LAB_DIR", str(tmp_path_factory.mktemp("labstate")))
    built = Lab.up(LabSpec(prefix=prefix))
    try:
        yield built
    finally:
        teardown(prefix, built.plan.namespaces)
