"""The worker's hot path, in Cython: epoll loop, connections, HTTP/1.1 framing, the built-in responder."""
