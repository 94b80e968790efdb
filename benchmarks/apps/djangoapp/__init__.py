"""The Django project of the django-wsgi and django-asgi scenarios: startproject's, plus a JSON view."""
