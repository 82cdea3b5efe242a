"""Packets: a capture read once into columnar batches, and every output a view of them.

The stages, in the order data flows: ``reader`` (pcap, pcapng, gzip frames), ``live`` (a
capture's stream arriving from another thread) and ``read`` (the file or stream in pieces,
walked and decoded by the compiled ``kernel`` into ``kernel_columns``, the rest by the
``scapy_decoder``; HTTP heads found as the pieces go by; ``ahead`` reads the next pieces in a
second thread); ``fields`` (the one
declaration of the field layout); ``columns`` (a decoded batch as typed columns: labels,
HTTP, Info, topology names); the views: ``lines`` (the packet list, JSON lines, CSV, written
by ``text`` programs in C) and ``frames`` (Arrow batches, the DataFrame, records). ``pipeline``
is the one way in (``open_capture``); ``capture`` keeps the packet-by-packet Scapy path
(``decode_file(engine="scapy")``, ``-v``), ``records`` the record type, ``summary`` the counts.
"""
