"""Mutation testing of what mutmut cannot reach: the compiled kernel, and the bugs an audit of
the suite once planted (issue #20). Each mutant is one small edit; the suite must fail on it.

Rule: never touches the working tree. Each mutant is applied to a fresh copy of the tracked
files (``git ls-files``), the extension is rebuilt there when C changed, and the mutant's tests
run against that copy (``PYTHONPATH`` first, so every ``python -m flannelcap`` the tests start
uses it too). A mutant is *killed* when its tests fail, *survives* when they pass.

    python mutation/run.py                 # every mutant
    python mutation/run.py --only planted  # the five planted bugs
    python mutation/run.py --name VLAN     # the mutants whose name says VLAN
    python mutation/run.py --list

Run it as root, like the suite: the planted ``explain`` and ``sudo`` bugs need the lab. The
Python side is covered by mutmut (``mutmut run``, configured in pyproject.toml). Results of
the last run are in mutation/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL = "flannelcap/packets/_ckernel.c"
# The tests that exercise the kernel: engines against each other, tshark, every output.
KERNEL_TESTS = ("tests/test_fast.py", "tests/test_tshark_oracle.py", "tests/test_outputs.py", "tests/test_fuzz.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    group: str  # "planted" (issue #20's audit) or "kernel"
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


def _kernel(name: str, old: str, new: str) -> Mutant:
    return Mutant(name, "kernel", KERNEL, old, new, KERNEL_TESTS)


MUTANTS = (
    # -- the five bugs the suite once let through ---------------------------------------------
    Mutant(
        "TCP flags masked with 0x7F (CWR lost)",
        "planted",
        KERNEL,
        "v[TCP_FLAGS] = b[at + 13];",
        "v[TCP_FLAGS] = b[at + 13] & 0x7F;",
        ("tests/test_fast.py", "tests/test_tshark_oracle.py"),
    ),
    Mutant(
        "nanosecond pcap read as microseconds by the fast reader",
        "planted",
        "flannelcap/packets/read.py",
        "time_ns = seconds * 1_000_000_000 + fraction * unit_ns",
        "time_ns = seconds * 1_000_000_000 + fraction * 1_000",
        ("tests/test_reader.py",),
    ),
    Mutant(
        "syn-retransmitted needs 3 copies",
        "planted",
        "flannelcap/analysis/audit.py",
        "if len(seen) < 2 or",
        "if len(seen) < 3 or",
        ("tests/test_audit.py",),
    ),
    Mutant(
        "explain looks the FDB up by the expected MAC, not the ARP entry's",
        "planted",
        "flannelcap/analysis/explain.py",
        "mac = arp.mac if arp and arp.mac else dst_node.vtep_mac",
        "mac = dst_node.vtep_mac",
        ("tests/test_lab_topology.py::test_each_fault_gives_its_finding_and_nothing_else",),
    ),
    Mutant(
        "the sudo password in sudo's environment",
        "planted",
        "flannelcap/remote/_command.py",
        """| sudo -S -p '' {tcpdump} &""",
        """| SUDO_PASSWORD=\\"$pw\\" sudo -S -p '' {tcpdump} &""",
        ("tests/test_remote.py::test_sudo_password_is_asked_once_and_sent_on_stdin",),
    ),
    # -- the kernel ---------------------------------------------------------------------------
    _kernel("VNI shifted by 7", "v[VNI] = u32(b, l4 + 12) >> 8;", "v[VNI] = u32(b, l4 + 12) >> 7;"),
    _kernel(
        "inner source MAC read as the destination",
        "v[INNER_SRC_MAC] = mac(b, inner + 6);",
        "v[INNER_SRC_MAC] = mac(b, inner);",
    ),
    _kernel(
        "checksum 0 treated as a checksum",
        "if (checksum == 0 || l4 + udp_len > end || udp_len < 8)",
        "if (l4 + udp_len > end || udp_len < 8)",
    ),
    _kernel("a computed checksum of 0 not sent as 0xFFFF", "        computed = 0xFFFF;", "        computed = 0;"),
    _kernel("odd last byte left out of the checksum", "        total += (uint64_t)b[at] << 8;", "        total += 0;"),
    _kernel(
        "VLAN id keeps the priority bits", "v[VLAN] = u16(b, start + 14) & 0xFFF;", "v[VLAN] = u16(b, start + 14);"
    ),
    _kernel(
        "first fragments taken as whole packets",
        "if ((u16(b, at + 6) & 0x3FFF) != 0",
        "if ((u16(b, at + 6) & 0x1FFF) != 0",
    ),
    _kernel("VXLAN flags other than I accepted", "if (b[l4 + 8] != 0x08 ||", "if ((b[l4 + 8] & 0x08) == 0 ||"),
    _kernel(
        "VXLAN reserved byte 7 not checked",
        "(b[l4 + 9] | b[l4 + 10] | b[l4 + 11] | b[l4 + 15])",
        "(b[l4 + 9] | b[l4 + 10] | b[l4 + 11])",
    ),
    _kernel(
        "TCP data offset ignored for the payload",
        "v[PAYLOAD_LEN] = length - doff > 0 ? length - doff : 0;",
        "v[PAYLOAD_LEN] = length - 20 > 0 ? length - 20 : 0;",
    ),
    _kernel(
        "UDP payload length off by the header",
        "v[PAYLOAD_LEN] = u16(b, at + 4) - 8 > 0 ? u16(b, at + 4) - 8 : 0;",
        "v[PAYLOAD_LEN] = u16(b, at + 4) > 0 ? u16(b, at + 4) : 0;",
    ),
    _kernel(
        "HTTP retransmitted head reported again",
        "if (!created && row[LAST_SEQ] != NONE && MOD32(row[LAST_SEQ] - seq[i]) < 0x80000000LL)",
        "if (0)",
    ),
    _kernel(
        "HTTP body announced by Content-Length searched for heads",
        "if (MOD32(seq[i] - row[BODY_START]) < MOD32(row[BODY_END] - row[BODY_START]))",
        "if (0)",
    ),
    _kernel(
        "the blank line ending a head not required",
        "(!blank_line || (p[i + 2] == '\\r' && p[i + 3] == '\\n'))",
        "(!blank_line || p[i + 2] == '\\r')",
    ),
    _kernel(
        "HTTP status digits read one short",
        "for (int64_t i = s1 + 1; i < s2; i++)",
        "for (int64_t i = s1 + 1; i < s2 - 1; i++)",
    ),
    _kernel(
        "sequence numbers wrap at 2^31",
        "#define MOD32(x) ((int64_t)(((uint64_t)(x)) & 0xFFFFFFFFULL))",
        "#define MOD32(x) ((int64_t)(((uint64_t)(x)) & 0x7FFFFFFFULL))",
    ),
)


def _copy(into: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, target)


def _build(tree: Path) -> None:
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--force"],
        cwd=tree,
        check=True,
        capture_output=True,
    )


def run(mutant: Mutant, base: Path) -> tuple[bool, float]:
    """Apply ``mutant`` to a copy of ``base``; return (killed, seconds)."""
    with tempfile.TemporaryDirectory(prefix="flannelcap-mutant-") as temporary:
        tree = Path(temporary) / "tree"
        shutil.copytree(base, tree, symlinks=True)
        source = tree / mutant.path
        text = source.read_text()
        if text.count(mutant.old) != 1:
            raise SystemExit(f"mutant {mutant.name!r}: {mutant.path} holds its text {text.count(mutant.old)} times")
        source.write_text(text.replace(mutant.old, mutant.new))
        if mutant.path.endswith(".c"):
            _build(tree)
        env = {**os.environ, "PYTHONPATH": str(tree), "FLANNELCAP_REQUIRE_ROOT": "1"}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
        )
        return done.returncode != 0, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["planted", "kernel"], help="one group of mutants")
    parser.add_argument("--name", help="only the mutants whose name holds this text")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.only in (None, m.group) and (args.name or "") in m.name]
    if args.list:
        for mutant in chosen:
            print(f"{mutant.group:8} {mutant.name}")
        return 0
    with tempfile.TemporaryDirectory(prefix="flannelcap-mutation-") as temporary:
        base = Path(temporary) / "base"
        _copy(base)
        _build(base)
        killed = 0
        for mutant in chosen:
            dead, seconds = run(mutant, base)
            killed += dead
            print(f"{'killed  ' if dead else 'SURVIVED'} {mutant.group:8} {seconds:6.1f} s  {mutant.name}", flush=True)
    print(f"{killed} of {len(chosen)} mutants killed ({100 * killed / len(chosen):.0f} %)")
    return 0 if killed == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
