"""The shell command that runs tcpdump on a node, and counting what it streams back.

Rule: pure. Strings and bytes in and out; nothing here opens a connection. Everything a user
typed (interface, filter, node name) is validated, then reaches the remote shell only inside
``shlex.quote``: a hostile string is rejected or inert, never executed.
"""

from __future__ import annotations

import re
import shlex
import struct
from dataclasses import dataclass

from flannelcap._errors import BadArgument

_INTERFACE_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
_NODE_RE = re.compile(r"^[A-Za-z0-9_.:@%\[\]-]{1,253}$")
STOP_LINE = b"stop\n"


def check_interface(name: str) -> str:
    """A Linux interface name (or ``any``).

    Raises:
        BadArgument: not a possible interface name (too long, spaces, shell characters).
    """
    if not _INTERFACE_RE.fullmatch(name):
        raise BadArgument(f"{name!r} is not an interface name (1-15 letters, digits, '_', '.', '-', '@')")
    return name


def check_node(name: str) -> str:
    """A host alias, name or address as ssh takes it.

    Raises:
        BadArgument: it holds spaces, quotes or shell characters.
    """
    if not _NODE_RE.fullmatch(name):
        raise BadArgument(f"{name!r} is not a host name, alias or address")
    return name


def check_filter(expression: str) -> str:
    """A tcpdump filter expression: any text on one line (it is passed quoted).

    Raises:
        BadArgument: it holds a newline or another control character.
    """
    if any(ord(ch) < 32 for ch in expression):
        raise BadArgument("the capture filter must be one line without control characters")
    return expression


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpdumpPlan:
    """What to run on the node.

    Attributes:
        interface: interface to capture on.
        filter: the user's capture filter ('' for none); the SSH session itself is always
            excluded, so that capturing over SSH does not capture its own traffic.
        count: stop after this many packets (tcpdump ``-c``), or None.
        privilege: ``root`` (plain tcpdump), ``sudo`` (``sudo -n``), or ``sudo-password``
            (the first line sent on stdin is the password, given to ``sudo -S``).
        output: ``-`` to stream the capture back, or a path on the node.
        drop_to: with a file output, the user tcpdump writes it as (so that it can be
            fetched and removed without root).
    """

    interface: str
    filter: str = ""
    count: int | None = None
    privilege: str = "root"
    output: str = "-"
    drop_to: str | None = None


BUFFER_KIB = 32768  # tcpdump -B: the capture's kernel buffer


def remote_command(plan: TcpdumpPlan) -> str:
    """The command line for ``exec_command``: a POSIX ``sh -c`` script, whatever the login shell.

    The script starts tcpdump in the background and waits. One line on stdin (``STOP_LINE``),
    or stdin closing because the connection dropped, sends tcpdump SIGINT: it flushes, prints
    its counts and exits, and no process is left on the node.
    """
    # --immediate-mode: each packet leaves the node as it is captured, so a live count is
    # live and a dropped connection loses nothing that was captured before it. Immediate mode
    # gives the kernel's ring one slot per snaplen (256 KiB on -i any): with the default 2 MB
    # a burst of a few packets overflows it ("dropped by kernel"); -B 32768 makes room for ~128.
    args = ["-i", check_interface(plan.interface), "-U", "--immediate-mode", "-B", str(BUFFER_KIB), "-s", "0", "-n"]
    args += ["-w", plan.output]
    if plan.count is not None:
        args += ["-c", str(int(plan.count))]
    if plan.drop_to:
        args += ["-Z", plan.drop_to]
    tcpdump = "tcpdump " + " ".join(shlex.quote(a) for a in args) + ' "$expr"'
    start = {
        "root": f"{tcpdump} &",
        "sudo": f"sudo -n {tcpdump} &",
        "sudo-password": f"printf '%s\\n' \"$pw\" | sudo -S -p '' {tcpdump} &",
    }[plan.privilege]
    script = "\n".join(
        [
            "exec 3<&0",
            "IFS= read -r pw <&3" if plan.privilege == "sudo-password" else ":",
            "set -- $SSH_CONNECTION",
            'own=""',
            '[ -n "$1" ] && own="not (tcp and host $1 and port $4)"',
            f"f={shlex.quote(check_filter(plan.filter))}",
            'if [ -n "$f" ] && [ -n "$own" ]; then expr="($f) and ($own)"; '
            'elif [ -n "$f" ]; then expr="$f"; else expr="$own"; fi',
            start,
            "pid=$!",
            "pw=",
            "( read -r _ <&3; kill -INT $pid 2>/dev/null ) &",
            "watcher=$!",
            "wait $pid; status=$?",
            "kill $watcher 2>/dev/null",
            "exit $status",
        ]
    )
    return "sh -c " + shlex.quote(script)


def pcap_prefix_within(data: bytes, limit: int) -> tuple[int, int]:
    """The longest prefix of a pcap that ends on a record boundary and fits in ``limit``
    bytes (at least the file header and one record): (its length, its packet count)."""
    if len(data) < 24:
        return len(data), 0
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    end, packets = 24, 0
    while end + 16 <= len(data):
        caplen = struct.unpack(order + "I", data[end + 8 : end + 12])[0]
        next_end = end + 16 + caplen
        if next_end > len(data) or (next_end > limit and packets > 0):
            break
        end, packets = next_end, packets + 1
    return end, packets


def tcpdump_counts(said: list[str]) -> dict[str, int]:
    """The counts tcpdump prints as it exits ("12 packets captured", "0 packets dropped by
    kernel"): ``captured``, ``received by filter``, ``dropped by kernel``, those it printed."""
    counts = {}
    for line in said:
        words = line.split()
        if len(words) >= 3 and words[0].isdigit() and words[1] == "packets":
            what = " ".join(words[2:])
            if what in ("captured", "received by filter", "dropped by kernel"):
                counts[what] = int(words[0])
    return counts


class PcapStreamCounter:
    """Counts packets and bytes in a pcap byte stream as it arrives, in any chunking."""

    def __init__(self) -> None:
        self.bytes = 0
        self.packets = 0
        self._order: str | None = None
        self._pending = b""
        self._skip = 0

    def feed(self, data: bytes) -> None:
        """Account for the next chunk of the stream."""
        self.bytes += len(data)
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        buffer = self._pending + data
        offset = 0
        if self._order is None:
            if len(buffer) < 24:
                self._pending = buffer
                return
            self._order = "<" if buffer[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
            offset = 24
        while len(buffer) - offset >= 16:
            caplen = struct.unpack(self._order + "I", buffer[offset + 8 : offset + 12])[0]
            self.packets += 1
            end = offset + 16 + caplen
            if end > len(buffer):
                self._skip = end - len(buffer)
                offset = len(buffer)
                break
            offset = end
        self._pending = buffer[offset:]
