"""Analysis: what a decoded capture and its topology say together.

``flows`` (conversations and HTTP exchanges: group-bys over the packet columns), ``audit``
(findings, with their evidence, where the wire and the tables disagree) and ``explain`` (one
conversation's path, step by step, each step citing its table row). Pure: no I/O here.
"""
