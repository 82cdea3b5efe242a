"""SSH sessions to nodes, set up the way the user's OpenSSH is.

Rule: every SSH concern lives here and in ``_capture``: reading ``~/.ssh/config`` (Host
aliases, HostName, User, Port, IdentityFile, ProxyCommand, ProxyJump, UserKnownHostsFile),
keys and the agent, host-key checking against known_hosts, and mapping paramiko's and the
socket layer's exceptions to flannelcap's one-line errors. Like OpenSSH with
``StrictHostKeyChecking`` on, an unknown host key is refused unless the user accepts new
keys, and a changed key is always refused.
"""

from __future__ import annotations

import getpass
import os
import select
import shlex
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from flannelcap._errors import (
    AuthenticationError,
    CommandError,
    ConnectError,
    HostKeyError,
)
from flannelcap.remote._command import check_node

DEFAULT_CONFIG = Path("~/.ssh/config")
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SshOptions:
    """How to reach nodes.

    Attributes:
        config: ssh_config file (``~/.ssh/config`` by default; missing is fine).
        accept_new_host_key: add unknown host keys to known_hosts (OpenSSH's ``accept-new``).
        ask_password: prompt for an SSH password when no key works (only on a terminal).
    """

    config: Path | None = None
    accept_new_host_key: bool = False
    ask_password: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSettings:
    """What ssh_config says for one host alias."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    known_hosts: tuple[str, ...]
    proxy_command: str | None
    proxy_jump: str | None
    timeout: float


def host_settings(alias: str, options: SshOptions) -> HostSettings:
    """Resolve ``alias`` through the ssh_config file, as ``ssh -G`` would.

    Raises:
        ConnectError: the config file exists but cannot be read.
    """
    check_node(alias)
    path = (options.config or DEFAULT_CONFIG).expanduser()
    config = paramiko.SSHConfig()
    if path.exists():
        try:
            config = paramiko.SSHConfig.from_path(str(path))
        except (OSError, ValueError) as exc:
            raise ConnectError(f"cannot read ssh config {path}: {exc}") from exc
    elif options.config is not None:
        raise ConnectError(f"ssh config {path} does not exist")
    found = config.lookup(alias)
    known = tuple(str(Path(p).expanduser()) for p in str(found.get("userknownhostsfile", "")).split() if p)
    timeout = found.get("connecttimeout")
    return HostSettings(
        alias=alias,
        hostname=str(found.get("hostname", alias)),
        port=int(found.get("port", 22)),
        user=str(found.get("user", getpass.getuser())),
        identity_files=tuple(str(Path(p).expanduser()) for p in found.get("identityfile", [])),
        known_hosts=known or (str(DEFAULT_KNOWN_HOSTS.expanduser()),),
        proxy_command=found.get("proxycommand") if str(found.get("proxycommand", "")).lower() != "none" else None,
        proxy_jump=found.get("proxyjump") if str(found.get("proxyjump", "")).lower() != "none" else None,
        timeout=float(timeout) if timeout else CONNECT_TIMEOUT,
    )


class _StrictPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Refuse unknown host keys, or accept and save them (``accept-new``)."""

    def __init__(self, settings: HostSettings, accept_new: bool) -> None:
        self.settings = settings
        self.accept_new = accept_new

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        fingerprint = f"{key.get_name()} {getattr(key, 'fingerprint', '')}".strip()
        known_hosts = self.settings.known_hosts[0]
        if not self.accept_new:
            raise HostKeyError(
                f"{self.settings.alias}: the host key of {hostname} is not known ({fingerprint}); "
                f"check it, then run again with --accept-new-host-key to add it to {known_hosts}"
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        Path(known_hosts).parent.mkdir(parents=True, exist_ok=True)
        with open(known_hosts, "a") as out:
            out.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _host_key_name(settings: HostSettings) -> str:
    return settings.hostname if settings.port == 22 else f"[{settings.hostname}]:{settings.port}"


def connect(
    alias: str,
    options: SshOptions,
    *,
    password_prompt: Callable[[str], str] | None = None,
    _depth: int = 0,
) -> paramiko.SSHClient:
    """Open an authenticated SSH session to ``alias``.

    Raises:
        ConnectError: unreachable, refused, proxy failed, or no SSH server answered.
        HostKeyError: unknown (and not accepted) or changed host key.
        AuthenticationError: no key, agent key or password was accepted.
    """
    settings = host_settings(alias, options)
    sock = _proxy_socket(settings, options, _depth)
    client = _client(settings, options)
    where = f"{alias} ({settings.user}@{settings.hostname}:{settings.port})"
    kwargs: dict[str, Any] = dict(
        hostname=settings.hostname,
        port=settings.port,
        username=settings.user,
        key_filename=[p for p in settings.identity_files if Path(p).exists()] or None,
        timeout=settings.timeout,
        banner_timeout=settings.timeout,
        auth_timeout=settings.timeout,
        allow_agent=True,
        look_for_keys=True,
        sock=sock,
    )
    try:
        client.connect(**kwargs)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"{alias}: the host key of {_host_key_name(settings)} has CHANGED: someone may be intercepting the "
            f"connection, or the node was reinstalled. If you trust the change, remove the old key with "
            f"'ssh-keygen -f {settings.known_hosts[0]} -R {_host_key_name(settings)}'"
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        interactive = options.ask_password and sys.stdin.isatty()
        prompt = password_prompt or (getpass.getpass if interactive else None)
        if prompt is None:
            raise AuthenticationError(
                f"{where}: authentication failed (keys from the agent, "
                f"{', '.join(settings.identity_files) or '~/.ssh/id_*'}); add your public key to the node's "
                "authorized_keys or set IdentityFile in your ssh config"
            ) from exc
        return _connect_with_password(alias, settings, kwargs, options, prompt, where)
    except HostKeyError:
        client.close()
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise ConnectError(f"{where}: {_reason(exc)}") from exc
    return client


def _client(settings: HostSettings, options: SshOptions) -> paramiko.SSHClient:
    """A client that knows the system's and the user's known hosts, and checks strictly."""
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    for path in settings.known_hosts:
        if Path(path).exists():
            client.load_host_keys(path)
    client.set_missing_host_key_policy(_StrictPolicy(settings, options.accept_new_host_key))
    return client


def _connect_with_password(
    alias: str,
    settings: HostSettings,
    kwargs: dict[str, Any],
    options: SshOptions,
    prompt: Callable[[str], str],
    where: str,
) -> paramiko.SSHClient:
    password = prompt(f"{settings.user}@{settings.hostname}'s password: ")
    client = _client(settings, options)
    kwargs = {**kwargs, "password": password, "allow_agent": False, "look_for_keys": False, "key_filename": None}
    if kwargs.get("sock") is not None:
        kwargs["sock"] = _proxy_socket(settings, options, 0) or _direct_socket(settings)
    try:
        client.connect(**kwargs)
    except paramiko.AuthenticationException as exc:
        client.close()
        raise AuthenticationError(f"{where}: authentication failed (password not accepted)") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise ConnectError(f"{where}: {_reason(exc)}") from exc
    return client


class _ProxyCommand(paramiko.ProxyCommand):  # type: ignore[misc]
    """paramiko's ProxyCommand, but an exited proxy reads as end of stream (as a closed
    socket does) instead of as an endless timeout, so a dropped connection is noticed."""

    def recv(self, size: int) -> bytes:
        """Like ``socket.recv``: what is there (at least one byte), b"" at the end of the
        stream, ``socket.timeout`` when nothing came in time."""
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        if not ready:
            raise TimeoutError()
        return os.read(self.process.stdout.fileno(), size)


def _direct_socket(settings: HostSettings) -> socket.socket:
    try:
        return socket.create_connection((settings.hostname, settings.port), timeout=settings.timeout)
    except OSError as exc:
        raise ConnectError(f"{settings.alias} ({settings.hostname}:{settings.port}): {_reason(exc)}") from exc


def _proxy_socket(settings: HostSettings, options: SshOptions, depth: int) -> Any:
    """The socket-like object for ProxyCommand or ProxyJump, or None to connect directly."""
    if settings.proxy_command:
        try:
            return _ProxyCommand(settings.proxy_command)
        except (OSError, paramiko.SSHException) as exc:
            raise ConnectError(f"{settings.alias}: ProxyCommand failed: {exc}") from exc
    if settings.proxy_jump:
        if depth > 5:
            raise ConnectError(f"{settings.alias}: ProxyJump chain is too long (a loop?)")
        hops = [h.strip() for h in settings.proxy_jump.split(",") if h.strip()]
        jump = _jump_alias(hops[-1])
        # Earlier hops of a chain are the jump host's own ProxyJump, as OpenSSH treats them.
        jump_client = connect(jump, options, _depth=depth + 1)
        transport = jump_client.get_transport()
        assert transport is not None
        try:
            return transport.open_channel("direct-tcpip", (settings.hostname, settings.port), ("127.0.0.1", 0))
        except (paramiko.SSHException, OSError) as exc:
            jump_client.close()
            raise ConnectError(
                f"{settings.alias}: ProxyJump via {jump} could not reach {settings.hostname}:{settings.port}: {exc}"
            ) from exc
    return None


def _jump_alias(hop: str) -> str:
    """``user@host:port`` hops are taken as aliases; user and port come from the config."""
    host = hop.split("@", 1)[-1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return "cannot resolve the host name"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd running, and on this port?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out: the node cannot be reached"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc) or type(exc).__name__
    if "protocol banner" in text or isinstance(exc, EOFError):
        return "no SSH server answered (connection closed)"
    return text


class SshRunner:
    """Runs commands on a node over an open SSH session (the ``Runner`` interface)."""

    def __init__(self, name: str, client: paramiko.SSHClient) -> None:
        self.name = name
        self.client = client

    def run(self, argv: Sequence[str]) -> str:
        """Run ``argv`` (each argument quoted) and return stdout.

        Raises:
            CommandError: non-zero exit.
            ConnectError: the connection failed.
        """
        command = shlex.join(argv)
        try:
            _stdin, stdout, stderr = self.client.exec_command(command, timeout=60)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            status = stdout.channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"{self.name}: {command}: {_reason(exc)}") from exc
        if status != 0:
            raise CommandError(f"{self.name}: {command}: {err.strip() or f'exit status {status}'}")
        return str(out)


def remote_user(runner: SshRunner) -> tuple[str, bool]:
    """The SSH user's name on the node, and whether it is root.

    Raises:
        CommandError: ``id`` failed.
        ConnectError: the connection failed.
    """
    uid, name = runner.run(["id", "-u"]).strip(), runner.run(["id", "-un"]).strip()
    return name, uid == "0"
