"""The ASGI edge: REST ``/api/v1`` with its OpenAPI document, pages and static files,
login sessions, CSRF, bearer tokens, and the ``/ws`` and ``/device`` endpoints that pump
the sans-I/O cores."""
