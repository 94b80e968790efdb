"""Running users' ASGI 3 and WSGI apps inside a worker: loading, the asyncio connection protocol, adapters."""
