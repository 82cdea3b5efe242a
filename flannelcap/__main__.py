"""``python -m flannelcap``: the same as the ``flannelcap`` command."""

from flannelcap.cli import entry_point

entry_point()
