"""The remote tcpdump command and the stream counter (pure)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import SAMPLES

from flannelcap import decode_file
from flannelcap._errors import SudoError
from flannelcap.remote._capture import _tcpdump_error
from flannelcap.remote._command import (
    BadArgument,
    PcapStreamCounter,
    TcpdumpPlan,
    check_filter,
    check_interface,
    check_node,
    remote_command,
)


@pytest.mark.parametrize("name", ["eth0; rm -rf /", "$(reboot)", "eth0 ", "a" * 16, "`id`", "eth0\n", ""])
def test_hostile_interfaces_are_rejected(name: str) -> None:
    with pytest.raises(BadArgument):
        check_interface(name)


@pytest.mark.parametrize("name", ["kpi093; rm -rf /", "$(id)", "kpi 093", "a'b", "x\ny"])
def test_hostile_node_names_are_rejected(name: str) -> None:
    with pytest.raises(BadArgument):
        check_node(name)


def test_filters_with_newlines_are_rejected_others_pass_quoted() -> None:
    with pytest.raises(BadArgument):
        check_filter("udp\nport 8472")
    assert check_filter("udp port 8472 and host 10.0.0.1") == "udp port 8472 and host 10.0.0.1"


def test_a_hostile_filter_stays_one_inert_argument() -> None:
    """The script the remote shell runs, run here by sh with tcpdump replaced by printf:
    the filter arrives as one argument, nothing in it is executed."""
    hostile = "'; touch /tmp/flannelcap-pwned; ' $(touch /tmp/flannelcap-pwned) `touch /tmp/flannelcap-pwned`"
    command = remote_command(TcpdumpPlan(interface="eth0", filter=hostile))
    argv = shlex.split(command)
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3
    script = argv[2].replace("tcpdump ", "printf '<%s>\\n' ", 1)
    # stdin is held open while the stand-in prints: its end is how a capture is stopped (the
    # script's watcher interrupts tcpdump then), and an end at once could stop the stand-in
    # before it printed.
    with subprocess.Popen(
        ["sh", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "SSH_CONNECTION": "192.168.1.254 50000 192.168.1.40 22"},
    ) as shell:
        assert shell.stdin is not None and shell.stdout is not None
        assert shell.wait(timeout=10) == 0  # the stand-in printed and ended, so the script ended
        lines = shell.stdout.read().splitlines()
        shell.stdin.close()
    assert f"<({hostile}) and (not (tcp and host 192.168.1.254 and port 22))>" in lines
    assert not Path("/tmp/flannelcap-pwned").exists()


def test_password_never_on_the_command_line() -> None:
    script = shlex.split(remote_command(TcpdumpPlan(interface="eth0", privilege="sudo-password")))[2]
    assert "IFS= read -r pw <&3" in script  # the password comes on stdin
    assert "printf '%s\\n' \"$pw\" | sudo -S -p '' tcpdump" in script  # and goes to sudo on stdin


def test_stream_counter_in_any_chunking() -> None:
    data = (SAMPLES / "cross-node-large-transfer.pcap").read_bytes()
    for size in (1, 3, 17, 1500, 70000):
        counter = PcapStreamCounter()
        for i in range(0, len(data), size):
            counter.feed(data[i : i + size])
        assert counter.packets == sum(1 for _ in decode_file(SAMPLES / "cross-node-large-transfer.pcap"))
        assert counter.bytes == len(data)


@pytest.mark.parametrize(
    ("status", "said", "kind", "text"),
    [
        (
            1,
            ["sudo: a password is required"],
            SudoError,
            "sudo needs a password to run tcpdump: run again with --sudo-password",
        ),
        (
            1,
            ["Sorry, user fc is not allowed to execute '/usr/bin/tcpdump -i eth0' as root on vm."],
            SudoError,
            "may not run tcpdump as root",
        ),
        (127, ["sh: 1: tcpdump: not found"], Exception, "tcpdump is not installed there"),
        (
            1,
            ["tcpdump: eth9: No such device exists", "(SIOCGIFHWADDR: No such device)"],
            Exception,
            "tcpdump failed (exit 1): tcpdump: eth9: No such device exists",
        ),
    ],
)
def test_tcpdump_and_sudo_errors_are_one_line(status: int, said: list[str], kind: type, text: str) -> None:
    error = _tcpdump_error("kpi093", status, said)
    assert isinstance(error, kind)
    assert str(error).startswith("kpi093: ") and text in str(error) and "\n" not in str(error)
