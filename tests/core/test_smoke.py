"""The built-in responder answers over a real socket."""

import http.client


def test_hello_and_json(serve):
    server = serve()
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    client.request("GET", "/")
    response = client.getresponse()
    assert (response.status, response.read()) == (200, b"Hello, World!")
    assert response.getheader("Content-Type") == "text/plain"
    client.request("GET", "/json?status=200")
    response = client.getresponse()
    assert response.read() == b'{"message":"Hello, World!"}'
    assert response.getheader("Content-Type") == "application/json"
