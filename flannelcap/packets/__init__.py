"""Packets: a capture read once into columnar batches, and every output a view of them.

The stages, in the order data flows: ``fields`` (the one declaration of the field layout),
``columns`` (a decoded batch made into typed columns: addresses as labels, HTTP, Info,
topology names), ``views`` (Arrow record batches, DataFrames, records, and the text, JSON and
CSV renderings made from them).
"""
