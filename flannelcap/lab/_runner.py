"""Running a command on this machine, in one of the lab's network namespaces: the lab's
``Runner`` for collecting a node's tables.

Rule: the acquire side. Only this and the rest of ``lab`` start local processes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from flannelcap._errors import CommandError


class LocalRunner:
    """Runs commands on this machine, optionally inside a network namespace."""

    def __init__(self, name: str, netns: str | None = None) -> None:
        self.name = name
        self.netns = netns

    def run(self, argv: Sequence[str]) -> str:
        """Run ``argv`` here (``ip netns exec`` when a namespace is set)."""
        full = ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)
        try:
            done = subprocess.run(full, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CommandError(f"{self.name}: {' '.join(argv)}: {exc}") from exc
        if done.returncode != 0:
            raise CommandError(f"{self.name}: {' '.join(argv)}: {done.stderr.strip() or done.returncode}")
        return done.stdout
