"""Capturing on one or several nodes at once over SSH, into local pcap files.

Rule: I/O edge. One thread per node: connect, start tcpdump (streamed back with
``-w -``, or written on the node and fetched with SFTP), collect the node's tables while it
runs, stop it on a duration, a packet count, a size cap or a stop request, and write what
arrived. A node that fails does not stop the others; its error is one line, and whatever it
had captured is kept, marked partial. Nothing is left running or lying on the node.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from flannelcap._errors import CommandError, ConnectError, FlannelcapError, RemoteError, SudoError
from flannelcap.remote._command import (
    STOP_LINE,
    PcapStreamCounter,
    TcpdumpPlan,
    check_node,
    pcap_prefix_within,
    remote_command,
    tcpdump_counts,
)
from flannelcap.remote._ssh import SshOptions, SshRunner, connect, remote_user
from flannelcap.topology.collect import collect_node_tables
from flannelcap.topology.model import NODE_TABLES

STOP_GRACE = 10.0  # seconds tcpdump gets to flush and exit after the stop line
START_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureRequest:
    """What to capture, and when to stop.

    Attributes:
        interface: interface on each node.
        filter: tcpdump filter ('' for everything but the SSH session itself).
        duration: stop after this many seconds.
        count: stop after this many packets (on each node).
        max_bytes: stop a node's capture when its file reaches this size.
        via_file: write on the node and fetch with SFTP instead of streaming.
        sudo_password: password for ``sudo -S`` (never put on a command line).
        output_dir: where the pcap files and tables go.
    """

    interface: str = "eth0"
    filter: str = ""
    duration: float | None = None
    count: int | None = None
    max_bytes: int | None = None
    via_file: bool = False
    sudo_password: str | None = None
    output_dir: Path = Path(".")


@dataclass(slots=True)
class NodeCapture:
    """The state and result of the capture on one node."""

    node: str
    path: Path | None = None
    tables_dir: Path | None = None
    packets: int = 0
    bytes: int = 0
    listening: bool = False
    done: bool = False
    partial: bool = False
    error: str | None = None
    tcpdump_said: list[str] = field(default_factory=list)
    tables_problem: str | None = None  # why the node's tables were not saved beside the capture
    tables_taken: threading.Event = field(default_factory=threading.Event)

    @property
    def tcpdump_counts(self) -> dict[str, int]:
        """What tcpdump counted as it exited: ``captured``, ``dropped by kernel``… (see
        ``tcpdump_counts``); empty if it printed none."""
        return tcpdump_counts(self.tcpdump_said)


def capture_file_name(node: str, interface: str, when: dt.datetime) -> str:
    """``<node>-<iface>-<UTC time>.pcap``."""
    return f"{node}-{interface}-{when.strftime('%Y%m%dT%H%M%SZ')}.pcap"


def _unused(path: Path) -> Path:
    """``path``, or ``path`` with -1, -2 … before the suffix: never overwrite a capture."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


class CaptureSession:
    """Captures on several nodes at once. Use ``start``, then ``stop`` (or ``wait``).

    Args:
        nodes: host aliases (as in ``ssh NODE``).
        request: what to capture.
        options: how to reach the nodes.
        taps: for a node, functions called with each chunk of its pcap stream as it arrives,
            after the chunk is written to the file (the live view, ``-w -``). Streamed
            captures only: ``via_file`` has no stream to tap.
        interfaces: for a node, the interface captured there instead of the request's
            (``capture --pod``: the pod's veth).
        filters: for a node, the tcpdump filter used there instead of the request's.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        request: CaptureRequest,
        options: SshOptions,
        taps: Mapping[str, Sequence[Callable[[bytes], object]]] | None = None,
        interfaces: Mapping[str, str] | None = None,
        filters: Mapping[str, str] | None = None,
    ) -> None:
        for node in nodes:
            check_node(node)
        if len(set(nodes)) != len(nodes):
            raise FlannelcapError("a node is named twice")
        self.request = request
        self.options = options
        self.taps = dict(taps or {})
        self.interfaces = {node: (interfaces or {}).get(node, request.interface) for node in nodes}
        self.filters = {node: (filters or {}).get(node, request.filter) for node in nodes}
        self.started = dt.datetime.now(dt.UTC)
        self.captures = {node: NodeCapture(node=node) for node in nodes}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start every node's capture, each in its own thread."""
        try:
            self.request.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FlannelcapError(
                f"cannot write captures to {self.request.output_dir}: {exc.strerror}; choose another directory with -o"
            ) from exc
        for node, state in self.captures.items():
            thread = threading.Thread(target=self._run_node, args=(node, state), name=f"capture-{node}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_listening(self, timeout: float = START_TIMEOUT) -> None:
        """Block until every node's tcpdump listens (or has failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.listening or s.done for s in self.captures.values()):
                return
            time.sleep(0.05)

    def stop(self) -> None:
        """Ask every node's tcpdump to stop, and wait for the files to be complete."""
        self._stop.set()
        for thread in self._threads:
            thread.join(STOP_GRACE + 30)

    def wait(self, on_progress: Callable[[dict[str, NodeCapture]], None] | None = None) -> None:
        """Wait until every node is done (duration, count or size), reporting progress."""
        deadline = time.monotonic() + self.request.duration if self.request.duration else None
        while not all(s.done for s in self.captures.values()):
            if deadline is not None and time.monotonic() >= deadline:
                self._stop.set()
            if on_progress:
                on_progress(self.captures)
            time.sleep(0.1)
        for thread in self._threads:
            thread.join()
        if on_progress:
            on_progress(self.captures)

    # -- one node --------------------------------------------------------------------

    def _run_node(self, node: str, state: NodeCapture) -> None:
        client = None
        try:
            client = connect(node, self.options)
            runner = SshRunner(node, client)
            user, is_root = remote_user(runner)
            privilege = "root" if is_root else ("sudo-password" if self.request.sudo_password else "sudo")
            if self.request.via_file:
                self._capture_via_file(node, state, client, runner, user, privilege)
            else:
                self._capture_streamed(node, state, client, runner, privilege)
        except FlannelcapError as exc:
            state.error = str(exc)
        except Exception as exc:
            state.error = f"{node}: {type(exc).__name__}: {exc}"
        finally:
            if state.path is not None and state.error:
                state.path = self._mark_partial(state.path)
                state.partial = state.path is not None
            if client is not None:
                client.close()
            state.done = True

    def _mark_partial(self, path: Path) -> Path | None:
        """Keep what arrived, renamed ``….partial.pcap``; remove a file that holds nothing."""
        if not path.exists() or path.stat().st_size <= 24:  # no packet after the pcap header
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        marked = _unused(path.with_name(path.stem + ".partial.pcap"))
        path.rename(marked)
        return marked

    def _open_channel(self, client: paramiko.SSHClient, plan: TcpdumpPlan) -> paramiko.Channel:
        transport = client.get_transport()
        if transport is None:
            raise ConnectError("the SSH connection closed")
        channel = transport.open_session()
        channel.exec_command(remote_command(plan))
        if plan.privilege == "sudo-password":
            channel.sendall((self.request.sudo_password or "").encode() + b"\n")
        channel.settimeout(0.2)
        return channel

    def _plan(self, node: str, privilege: str, output: str = "-", drop_to: str | None = None) -> TcpdumpPlan:
        return TcpdumpPlan(
            interface=self.interfaces[node],
            filter=self.filters[node],
            count=self.request.count,
            privilege=privilege,
            output=output,
            drop_to=drop_to,
        )

    def _capture_streamed(
        self, node: str, state: NodeCapture, client: paramiko.SSHClient, runner: SshRunner, privilege: str
    ) -> None:
        path = _unused(self.request.output_dir / capture_file_name(node, self.interfaces[node], self.started))
        channel = self._open_channel(client, self._plan(node, privilege))
        counter = PcapStreamCounter()
        state.path = path
        taps = self.taps.get(node, ())
        with open(path, "wb") as out:

            def write(data: bytes) -> None:
                out.write(data)  # the file first: whatever a tap does, the capture holds every byte
                for tap in taps:
                    tap(data)

            self._pump(node, state, channel, runner, write, counter)
        state.packets, state.bytes = counter.packets, counter.bytes
        if self.request.max_bytes is not None and state.bytes > self.request.max_bytes:
            # Packets arrive faster than tcpdump stops: cut the file at the cap, on a record boundary.
            keep, packets = pcap_prefix_within(path.read_bytes(), self.request.max_bytes)
            os.truncate(path, keep)
            state.packets, state.bytes = packets, keep

    def _capture_via_file(
        self,
        node: str,
        state: NodeCapture,
        client: paramiko.SSHClient,
        runner: SshRunner,
        user: str,
        privilege: str,
    ) -> None:
        remote = runner.run(["mktemp", "-t", "flannelcap-XXXXXXXX.pcap"]).strip()
        try:
            channel = self._open_channel(
                client, self._plan(node, privilege, remote, None if privilege == "root" else user)
            )
            self._pump(node, state, channel, runner, None, None)
            path = _unused(self.request.output_dir / capture_file_name(node, self.interfaces[node], self.started))
            state.path = path
            with client.open_sftp() as sftp:
                sftp.get(remote, str(path))
            state.bytes = path.stat().st_size
            counter = PcapStreamCounter()
            counter.feed(path.read_bytes())
            state.packets = counter.packets
        finally:
            with contextlib.suppress(FlannelcapError):
                runner.run(["rm", "-f", "--", remote])

    def _pump(
        self,
        node: str,
        state: NodeCapture,
        channel: paramiko.Channel,
        runner: SshRunner,
        write: Callable[[bytes], object] | None,
        counter: PcapStreamCounter | None,
    ) -> None:
        """Move bytes from the channel to the file until tcpdump exits; stop it when asked."""
        stderr = b""
        tables: threading.Thread | None = None
        stop_sent_at: float | None = None
        started = time.monotonic()
        while True:
            if not state.listening and b"listening on" in stderr:
                state.listening = True
                # The tables are taken beside the stream, on their own channels: the packets keep
                # flowing to the file and the live view meanwhile.
                tables = threading.Thread(
                    target=self._save_tables, args=(node, state, runner), name=f"tables-{node}", daemon=True
                )
                tables.start()
            want_stop = self._stop.is_set() or (
                self.request.max_bytes is not None and counter is not None and counter.bytes >= self.request.max_bytes
            )
            if want_stop and stop_sent_at is None:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    channel.sendall(STOP_LINE)
                stop_sent_at = time.monotonic()
            if stop_sent_at is not None and time.monotonic() - stop_sent_at > STOP_GRACE:
                channel.close()
                raise ConnectError(f"{node}: tcpdump did not stop within {STOP_GRACE:.0f} s")
            if not state.listening and time.monotonic() - started > START_TIMEOUT:
                channel.close()
                raise ConnectError(f"{node}: tcpdump did not start: {_last_line(stderr) or 'no answer'}")
            transport = channel.get_transport()
            if (transport is None or not transport.is_active()) and not channel.recv_ready():
                # Only once what had arrived before the drop is written: it is kept.
                raise ConnectError(f"{node}: the connection dropped during the capture")
            got_data = False
            try:
                data = channel.recv(65536)
                got_data = True
            except TimeoutError:
                data = b""
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise ConnectError(f"{node}: the connection dropped during the capture ({exc})") from exc
            if data:
                if write is not None:
                    write(data)
                if counter is not None:
                    counter.feed(data)
                    state.packets, state.bytes = counter.packets, counter.bytes
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(65536)
            if got_data and not data:  # EOF: tcpdump has exited
                break
            if channel.closed:
                break
        if tables is not None:
            tables.join()
        deadline = time.monotonic() + STOP_GRACE  # the exit status follows the end of the data
        while not channel.exit_status_ready() and not channel.closed and time.monotonic() < deadline:
            time.sleep(0.02)
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536)
        status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        state.tcpdump_said = stderr.decode(errors="replace").splitlines()
        if status == -1 and stop_sent_at is None:
            raise ConnectError(f"{node}: the connection dropped during the capture")
        if status != 0:
            raise _tcpdump_error(node, status, state.tcpdump_said)

    def _save_tables(self, node: str, state: NodeCapture, runner: SshRunner) -> None:
        """The node's flannel tables, taken as the capture starts, beside the capture file
        (``tables_taken`` is set when done, saved or not)."""
        try:
            self._write_tables(node, state, runner)
        except Exception as exc:  # a thread of its own: whatever went wrong is a note, the capture goes on
            state.tables_problem = str(exc) or type(exc).__name__
        finally:
            state.tables_taken.set()

    def wait_tables(self, timeout: float = START_TIMEOUT) -> None:
        """Block until every listening node's tables are taken (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        for state in self.captures.values():
            if state.listening:
                state.tables_taken.wait(max(0.0, deadline - time.monotonic()))

    def _write_tables(self, node: str, state: NodeCapture, runner: SshRunner) -> None:
        tables_dir = self.request.output_dir / f"{self.started.strftime('%Y%m%dT%H%M%SZ')}.tables" / node
        try:
            tables = collect_node_tables(runner)
        except (CommandError, ConnectError) as exc:
            state.tables_problem = str(exc)
            return
        tables_dir.mkdir(parents=True, exist_ok=True)
        for kind, text in tables.items():
            table = NODE_TABLES[kind]
            (tables_dir / (f"{table.stem}.json" if table.has_json else table.stem)).write_text(text)
        commands = {kind: list(table.json_argv) for kind, table in NODE_TABLES.items()}
        (tables_dir / "commands.json").write_text(json.dumps(commands, indent=2))
        self._save_kubectl(runner, tables_dir.parent)
        state.tables_dir = tables_dir.parent

    def _save_kubectl(self, runner: SshRunner, directory: Path) -> None:
        """Nodes, pods, Services and EndpointSlices as kubectl sees them, where the node has a
        working kubectl (a k3s server does): it names the pods and the Services' endpoints.
        Without one, packets are named by node only."""
        for kind in ("nodes", "pods", "svc", "endpointslices"):
            target = directory / f"kubectl-get-{kind}.json"
            if target.exists():
                continue
            for kubectl in (["kubectl"], ["k3s", "kubectl"]):
                extra = [] if kind == "nodes" else ["-A"]
                try:
                    text = runner.run([*kubectl, "get", kind, *extra, "-o", "json"])
                except (CommandError, ConnectError):
                    continue
                target.write_text(text)
                break


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _tcpdump_error(node: str, status: int, said: list[str]) -> RemoteError:
    """A one-line error from what sudo or tcpdump printed."""
    text = " ".join(line.strip() for line in said if line.strip())
    if "a password is required" in text or "a terminal is required" in text:
        return SudoError(f"{node}: sudo needs a password to run tcpdump: run again with --sudo-password")
    if "incorrect password" in text or "Sorry, try again" in text:
        return SudoError(f"{node}: the sudo password was not accepted")
    if "not allowed to execute" in text or "not in the sudoers" in text or "may not run sudo" in text:
        return SudoError(
            f"{node}: the SSH user may not run tcpdump as root: allow it in sudoers "
            "(e.g. 'USER ALL=(root) NOPASSWD: /usr/bin/tcpdump') or connect as root"
        )
    if status == 127 or "tcpdump: not found" in text or "command not found" in text:
        return RemoteError(f"{node}: tcpdump is not installed there: install the tcpdump package on the node")
    detail = next((line.strip() for line in said if line.startswith("tcpdump:")), _last_line("\n".join(said).encode()))
    return RemoteError(f"{node}: tcpdump failed (exit {status}): {detail or 'no message'}")
