"""Builds the Cython extension modules of the worker's hot path."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["fastcluster.core.server", "fastcluster.core.connection", "fastcluster.core.context",
           "fastcluster.core.responder", "fastcluster.core.parser_state",
           "fastcluster.core.stats", "fastcluster.core.producer", "fastcluster.core.routes",
           "fastcluster.core.static", "fastcluster.core.heads", "fastcluster.core.asgi",
           "fastcluster.core.wsgi", "fastcluster.core.forwarded", "fastcluster.core.transport",
           "fastcluster.core.tls", "fastcluster.core.websocket", "fastcluster.core.websocket_echo",
           "fastcluster.core.asgi_websocket", "fastcluster.core.deflate"]
# The C libraries some modules call: OpenSSL (libssl-dev 3 at build time), zlib (zlib1g-dev).
LIBRARIES = {"fastcluster.core.tls": ["ssl", "crypto"], "fastcluster.core.deflate": ["z"]}


def extension(name: str) -> Extension:
    return Extension(
        name,
        [os.path.join("src", *name.split(".")) + ".pyx"],
        extra_compile_args=["-O2"],
        libraries=LIBRARIES.get(name, []),
    )


setup(
    ext_modules=cythonize(
        [extension(name) for name in MODULES],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
        },
    ),
)
