"""The hello-world WSGI app every WSGI server is measured with (BODY_BYTES sets a larger body)."""

import os

BODY = b"x" * int(os.environ["BODY_BYTES"]) if os.environ.get("BODY_BYTES") else b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
