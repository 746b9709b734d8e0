"""Operations: Prometheus metrics, health and readiness, structured logs with request ids.

``metrics``, ``logs`` and ``health`` import neither Starlette nor Strawberry, so the worker uses
them too; ``routes`` (the HTTP endpoints and the request-id middleware) and ``graphql`` (the
per-operation metrics extension) belong to the API process.
"""
