"""Running users' apps in the workers: loading them (loading.py), and the ASGI and WSGI adapters."""
