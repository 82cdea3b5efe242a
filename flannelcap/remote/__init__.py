"""Remote capture and table collection over SSH.

``capture`` captures on nodes for a while and returns the results; ``capturing`` is a
context manager for notebooks: the capture runs while the ``with`` block makes traffic.
A session's streams can be tapped as they arrive (the command line's live view, and
``_pcapng_stream``'s merged pcapng for ``-w``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from flannelcap._errors import FlannelcapError
from flannelcap.remote._capture import CaptureRequest, CaptureSession, NodeCapture
from flannelcap.remote._ssh import SshOptions, SshRunner, connect


def _session(
    nodes: Sequence[str],
    *,
    interface: str = "eth0",
    filter: str = "",
    duration: float | None = None,
    count: int | None = None,
    max_bytes: int | None = None,
    output_dir: str | Path = ".",
    ssh_config: str | Path | None = None,
    accept_new_host_key: bool = False,
    sudo_password: str | None = None,
    via_file: bool = False,
) -> CaptureSession:
    request = CaptureRequest(
        interface=interface,
        filter=filter,
        duration=duration,
        count=count,
        max_bytes=max_bytes,
        via_file=via_file,
        sudo_password=sudo_password,
        output_dir=Path(output_dir),
    )
    options = SshOptions(
        config=Path(ssh_config) if ssh_config else None, accept_new_host_key=accept_new_host_key, ask_password=False
    )
    return CaptureSession(list(nodes), request, options)


def capture(nodes: Sequence[str], **kwargs: object) -> list[NodeCapture]:
    """Capture on ``nodes`` until ``duration`` / ``count`` / ``max_bytes`` is reached.

    Keyword arguments are those of ``capturing``. Returns one ``NodeCapture`` per node: its
    file, packet count, tables directory, and error (None if it went well).

    Raises:
        FlannelcapError: no stop condition was given.
    """
    if not any(kwargs.get(k) for k in ("duration", "count", "max_bytes")):
        raise FlannelcapError("give duration, count or max_bytes (or use 'capturing' as a context manager)")
    session = _session(nodes, **kwargs)  # type: ignore[arg-type]
    session.start()
    session.wait()
    return list(session.captures.values())


@contextmanager
def capturing(nodes: Sequence[str], **kwargs: object) -> Iterator[CaptureSession]:
    """Capture on ``nodes`` while the ``with`` block runs.

    Args:
        nodes: host aliases, as for ``ssh``.
        **kwargs: interface, filter, duration, count, max_bytes, output_dir, ssh_config,
            accept_new_host_key, sudo_password, via_file.

    Yields:
        The running session; after the block, ``session.captures[node]`` holds each result.
    """
    session = _session(nodes, **kwargs)  # type: ignore[arg-type]
    session.start()
    session.wait_listening()
    try:
        yield session
    finally:
        session.stop()


__all__ = [
    "CaptureRequest",
    "CaptureSession",
    "NodeCapture",
    "SshOptions",
    "SshRunner",
    "capture",
    "capturing",
    "connect",
]
