"""Collecting node tables over SSH, through the same ``Runner`` interface as the lab.

Rule: I/O edge; all SSH concerns stay in ``_ssh``.
"""

from __future__ import annotations

from collections.abc import Sequence

from flannelcap.remote._ssh import SshOptions, SshRunner, connect
from flannelcap.topology.collect import collect_node_tables


def collect_over_ssh(nodes: Sequence[str], options: SshOptions) -> dict[str, dict[str, str]]:
    """Every node's flannel tables, by node alias.

    Raises:
        RemoteError: a node cannot be reached.
        CommandError: a table command failed on a node.
    """
    tables = {}
    for node in nodes:
        client = connect(node, options)
        try:
            tables[node] = collect_node_tables(SshRunner(node, client))
        finally:
            client.close()
    return tables
