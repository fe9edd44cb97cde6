"""Build the optional C extension of prunekit; all other metadata lives in pyproject.toml.

``prunekit.binary._popcount`` is the packed xor + popcount GEMM behind XNOR-Net
inference. It is optional: if no C compiler is available the build goes on
without it and prunekit falls back to a NumPy implementation (same integers,
slower).
"""
import sys

from setuptools import Extension, setup

_extra = [] if sys.platform == "win32" else ["-O3", "-pthread"]

setup(
    ext_modules=[
        Extension(
            "prunekit.binary._popcount",
            sources=["src/prunekit/binary/_popcount.c"],
            extra_compile_args=_extra,
            extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
            optional=True,
        )
    ]
)
