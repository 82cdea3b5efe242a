"""Topology: the cluster as its tables describe it — nodes, VTEPs, pods — and the names it gives
to a capture's addresses.

The stages, in the order data flows: ``tables`` and ``kube`` (parsers of what nodes and kubectl
print; pure), ``model`` (the ``Topology`` built from them, with each fact's source), ``collect``
(the I/O edge: saved-tables directories, topology files, commands through a runner),
``annotate`` (names for one record; batches are named column-wise in ``packets.columns``) and
``targets`` (where to capture to see given pods; pure).
"""
