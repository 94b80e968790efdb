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
           "fastcluster.core.asgi_websocket"]
# Modules calling OpenSSL (libssl-dev 3 at build time).
WITH_OPENSSL = {"fastcluster.core.tls"}


def extension(name: str) -> Extension:
    return Extension(
        name,
        [os.path.join("src", *name.split(".")) + ".pyx"],
        extra_compile_args=["-O2"],
        libraries=["ssl", "crypto"] if name in WITH_OPENSSL else [],
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
