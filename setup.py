"""Builds flannelcap's one C extension, the fast path's loops; everything else is in pyproject.toml.

The extension is optional: without a C compiler flannelcap installs and decodes with Scapy.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "flannelcap.packets._ckernel",
            ["flannelcap/packets/_ckernel.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
