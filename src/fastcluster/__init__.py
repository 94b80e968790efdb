"""fastcluster: a multicore HTTP/1.1 server for Python with a C hot path and a supervising master."""

__version__ = "0.1.0"
