"""GraphQL over HTTP: the response media type the client asked for, and its status codes.

The view (app/graphql/view.py) answers in ``application/json`` and this module turns the
answer into what the client's ``Accept`` header prefers (``negotiate``):

* ``application/json`` (also ``*/*``, ``application/*`` and no ``Accept`` at all): unchanged.
  A well-formed request gets HTTP 200 even when its document does not parse or validate, or
  its variables cannot be coerced (the legacy watershed rules of the spec).
* ``application/graphql-response+json``, when the client ranks it at least as high as
  ``application/json``: the same body with that content type (``charset=utf-8``). A request
  refused before execution (a document that does not parse or validate, variables that cannot
  be coerced, a document over a limit) gets HTTP 400 and no ``data`` entry; an executed
  operation gets 200, even when ``data`` is null because of a field error. Request errors the
  view already answered with a 4xx (bad JSON, 401, 413) keep their status.

A refused request is told from an executed one by its errors: graphql-core gives every field
error a ``path``; errors raised before execution have none.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.observability.graphql import count_http_error

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
GRAPHQL_RESPONSE_UTF8 = f"{GRAPHQL_RESPONSE}; charset=utf-8"


def _quality(params: list[str]) -> float:
    for p in params:
        name, _, value = p.partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value.strip())))
            except ValueError:
                return 0.0
    return 1.0


def preferred(accept: str | None) -> str:
    """``GRAPHQL_RESPONSE`` when the client ranks it at least as high as ``application/json``
    (an explicit entry beats a wildcard of the same quality), else ``JSON``."""
    if not accept:
        return JSON
    best: dict[str, tuple[float, int]] = {}  # media type -> (quality, specificity)
    for part in accept.split(","):
        media, *params = part.split(";")
        media = media.strip().lower()
        q = _quality(params)
        for target in (GRAPHQL_RESPONSE, JSON):
            if media == target:
                score = (q, 2)
            elif media in ("application/*", "*/*"):
                score = (q, 1 if media == "application/*" else 0)
            else:
                continue
            if score[1] >= best.get(target, (0.0, -1))[1]:
                best[target] = score
    gql = best.get(GRAPHQL_RESPONSE, (0.0, -1))
    json_ = best.get(JSON, (0.0, -1))
    if gql[0] > 0 and gql[1] == 2 and gql[0] >= json_[0]:
        return GRAPHQL_RESPONSE
    return JSON


def _refused_before_execution(body: dict[str, object]) -> bool:
    errors = body.get("errors")
    return (
        body.get("data", None) is None
        and isinstance(errors, list)
        and bool(errors)
        and all(isinstance(e, dict) and not e.get("path") for e in errors)
    )


def _count_refusal(response: Response) -> None:
    """A request the view refused before GraphQL ran (400, 401, 413): its code, in the metrics."""
    try:
        decoded = orjson.loads(bytes(response.body))
        code = decoded["errors"][0]["extensions"]["code"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        code = "BAD_REQUEST"
    count_http_error(str(code))


def negotiate(request: Request, response: Response) -> Response:
    """The view's JSON answer in the media type the client prefers (see the module docstring)."""
    if response.status_code >= 400 and response.media_type == JSON:
        _count_refusal(response)
    if response.media_type != JSON or preferred(request.headers.get("accept")) != GRAPHQL_RESPONSE:
        return response
    body = bytes(response.body)
    status = response.status_code
    if status == 200 and b'"data":null' in body:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:  # lone surrogates the view escaped: left as they are
            decoded = None
        if isinstance(decoded, dict) and _refused_before_execution(decoded):
            decoded.pop("data", None)
            body, status = orjson.dumps(decoded), 400
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
    }
    return Response(body, status_code=status, headers=headers, media_type=GRAPHQL_RESPONSE_UTF8)
