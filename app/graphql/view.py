"""The /graphql endpoint: Strawberry's ASGI view behind an API-key gate.

* Every operation needs ``Authorization: Key <secret>`` (or ``Bearer``); without one the answer
  is HTTP 401 with a GraphQL-shaped error whose ``extensions.code`` is ``UNAUTHENTICATED``.
  A browser GET of the page itself (GraphiQL) needs no key: paste it into the headers tab.
* GraphiQL is the app's own page and files (``graphiql_routes``), built from npm at pinned
  versions by tools/graphiql/build.sh: it works with no network.
* WebSockets (``graphql-transport-ws`` and legacy ``graphql-ws``) authenticate once, when the
  client sends ``connection_init``: its payload's ``Authorization`` entry, else the upgrade
  request's header (see app/live/transport.py). Browsers cannot set headers on a WebSocket, so
  GraphiQL sends the key of its headers tab as the ``connection_init`` payload.
* Domain errors raised by query resolvers keep their code and field in ``extensions``; any other
  exception is masked ("internal error") and logged with the request id, never a stack trace.
* GraphQL-over-HTTP with ``application/json``: a well-formed request gets HTTP 200, its errors in
  ``errors``: syntax and validation errors and variables that cannot be coerced with ``code``
  ``GRAPHQL_VALIDATION_FAILED``, a document over a limit with the limit's own code
  (app/graphql/limits.py). A request that is not one (a body that is not a JSON object, bytes
  that are not UTF-8, JSON nested beyond the decoder's reach, a wrong content type, no query)
  gets HTTP 400 and ``{"errors": [...]}`` with ``code`` ``BAD_REQUEST``, never plain text.
* A subscription sent over HTTP gets HTTP 400 ``BAD_REQUEST`` saying it needs the WebSocket.
* A client whose ``Accept`` prefers ``application/graphql-response+json`` gets that media type
  and the spec's status codes instead (``app.graphql.http_spec.negotiate``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from app.core.errors import DomainError, Unauthenticated
from app.graphql.context import Context
from app.graphql.http_spec import negotiate
from app.graphql.limits import Refused
from app.live.transport import (
    LegacyWSHandler,
    TextWebSocketAdapter,
    TransportWSHandler,
    connection_authorization,
)
from app.observability.logs import new_request_id
from app.runtime import Runtime

log = logging.getLogger("labelstream.graphql")


def format_error(error: GraphQLError, request_id: str) -> dict[str, Any]:
    original = error.original_error
    out: dict[str, Any] = {"message": error.message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        out["path"] = list(error.path)
    if isinstance(original, DomainError):
        out["message"] = original.message
        out["extensions"] = {"code": original.code.value, "field": original.field}
    elif isinstance(error, Refused):  # refused before validation: a limit, or invalid variables
        out["extensions"] = dict(error.extensions or {})
    elif isinstance(original, ConnectionFailure):  # MongoDB unreachable for a moment: retry
        log.warning("request %s: the database is unreachable: %s", request_id, original)
        out["message"] = "the database is unreachable; try again in a moment"
        out["extensions"] = {"code": "UNAVAILABLE", "requestId": request_id}
    elif original is None or not error.path:
        # parse/validation errors, and variables that cannot be coerced (NaN, missing fields):
        # the request is wrong, nothing failed inside a resolver
        out["extensions"] = {"code": "GRAPHQL_VALIDATION_FAILED"}
    else:
        log.error("request %s failed", request_id, exc_info=original)
        out["message"] = f"internal error (request id {request_id})"
        out["extensions"] = {"code": "INTERNAL", "requestId": request_id}
    return out


def dumps(data: object) -> bytes:
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        # what orjson refuses but JSON can say: a lone surrogate echoed from the request
        # (escaped), an integer beyond 64 bits
        return json.dumps(data, ensure_ascii=True).encode()


def error_body(message: str, code: str) -> bytes:
    """A request error: no ``data`` entry, since nothing was executed (GraphQL-over-HTTP)."""
    return dumps({"errors": [{"message": message, "extensions": {"code": code}}]})


_HTTP_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


def request_error(status: int, message: str) -> Response:
    code = _HTTP_CODES.get(status, "BAD_REQUEST")
    return Response(error_body(message, code), status_code=status, media_type="application/json")


GRAPHIQL_DIR = Path(__file__).parent / "static" / "graphiql"


@functools.cache
def graphiql_page() -> str:
    """GraphiQL's page: it loads only the app's own files (``GRAPHIQL_DIR``), each URL carrying a
    hash of the assets so that a browser never mixes an old cached script with a new page."""
    digest = hashlib.sha256()
    for name in ("vendor.js", "vendor.css", "labelstream-graphiql.js"):
        digest.update((GRAPHIQL_DIR / name).read_bytes())
    html = (GRAPHIQL_DIR / "index.html").read_text(encoding="utf-8")
    return html.replace("{{version}}", digest.hexdigest()[:12])


def graphiql_routes() -> list[BaseRoute]:
    """``/static/graphiql/*``: the files of the page, built from npm by tools/graphiql/build.sh."""
    return [Mount("/static/graphiql", app=StaticFiles(directory=GRAPHIQL_DIR), name="graphiql")]


class BodyTooLarge(Exception):
    """A request body read past ``max_request_bytes`` (one sent without a Content-Length)."""


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops a body at ``limit`` bytes, whatever its Content-Length says."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return bounded


def _too_large(limit: int) -> Response:
    return Response(
        error_body(f"request body larger than {limit} bytes", "PAYLOAD_TOO_LARGE"),
        status_code=413,
        media_type="application/json",
    )


SUBSCRIPTION_OVER_HTTP = (
    "subscriptions are served over a WebSocket at /graphql (graphql-transport-ws or graphql-ws), "
    "not over HTTP"
)


def _is_subscription(query: str | None, operation_name: str | None) -> bool:
    """Whether the operation to run is a subscription (parsed only when the text could say so)."""
    if not query or "subscription" not in query:
        return False
    try:
        document = parse(query, no_location=True)
    except GraphQLError:
        return False  # the normal path reports the syntax error
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    return len(operations) == 1 and operations[0].operation == OperationType.SUBSCRIPTION


class GraphQLView(GraphQL[Context, None]):
    runtime: Runtime | None = None
    websocket_adapter_class = TextWebSocketAdapter  # type: ignore[assignment]
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    async def render_graphql_ide(self, request: Request) -> Response:
        # Ours, not Strawberry's (a CDN page): see app/graphql/static/graphiql/labelstream-graphiql.js
        return HTMLResponse(graphiql_page())

    def _is_ide_page(self, request: Request) -> bool:
        return (
            request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
            and "query" not in request.query_params
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {}).setdefault("request_id", new_request_id())  # X-Request-ID
        if scope["type"] == "http":
            limit = self._runtime.settings.max_request_bytes
            request = Request(scope, _bounded(receive, limit))
            if not self._is_ide_page(request):
                if int(request.headers.get("content-length") or 0) > limit:
                    await negotiate(request, _too_large(limit))(scope, receive, send)
                    return
                try:
                    principal = await self._runtime.auth.authenticate(request.headers.get("authorization"))
                except Unauthenticated as exc:
                    response = Response(
                        error_body(exc.message, "UNAUTHENTICATED"),
                        status_code=401,
                        media_type="application/json",
                        headers={"WWW-Authenticate": 'Key realm="labelstream"'},
                    )
                    await negotiate(request, response)(scope, receive, send)
                    return
                except ConnectionFailure as exc:  # MongoDB unreachable: a typed 503, never a 500
                    log.warning("the database is unreachable: %s", exc)
                    response = Response(
                        error_body("the database is unreachable; try again in a moment", "UNAVAILABLE"),
                        status_code=503,
                        media_type="application/json",
                        headers={"Retry-After": "1"},
                    )
                    await negotiate(request, response)(scope, receive, send)
                    return
                scope["state"]["principal"] = principal
            try:
                response = await self.run(request)
            except HTTPException as exc:  # Strawberry would answer these in plain text
                response = request_error(exc.status_code, exc.reason)
            except StarletteHTTPException as exc:  # a multipart body Starlette cannot read
                response = request_error(exc.status_code, exc.detail)
            except BodyTooLarge:  # a chunked body (no Content-Length) that went past the limit
                response = _too_large(limit)
            await negotiate(request, response)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    @property
    def _runtime(self) -> Runtime:
        if self.runtime is None:  # pragma: no cover - the lifespan sets it before serving
            raise RuntimeError("the GraphQL view is used before the app started")
        return self.runtime

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        # WebSockets get their principal in on_ws_connect: every operation waits for the ack.
        state = request.scope.get("state", {})
        return Context(
            request=request,
            runtime=self._runtime,
            principal_or_none=state.get("principal"),
            request_id=state.get("request_id", ""),
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = context.request.scope.get("state", {}).get("connection_params")
        header = connection_authorization(params) or context.request.headers.get("authorization")
        try:
            context.principal_or_none = await self._runtime.auth.authenticate(header)
        except Unauthenticated as exc:
            raise ConnectionRejectionError(
                {"message": exc.message, "extensions": {"code": exc.code.value}}
            ) from None
        return UNSET

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        request_id = request.scope.get("state", {}).get("request_id", "")
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            data["errors"] = [format_error(e, request_id) for e in result.errors]  # type: ignore[typeddict-item]
        if result.extensions:
            data["extensions"] = result.extensions
        return data

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Any,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # Strawberry would run a subscription over plain HTTP as if it were a query and fail
        # inside it (an internal error): say where subscriptions are served instead.
        if _is_subscription(request_data.query, request_data.operation_name):
            raise HTTPException(400, SUBSCRIPTION_OVER_HTTP)
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        # The usual request, a POST of one operation as plain ``application/json``, read without
        # Strawberry's parsing of the content type with the email package (a few percent of a
        # small query); anything else, or anything wrong with it, goes Strawberry's way.
        if (
            request.method == "POST"
            and request.content_type == "application/json"
            and self._get_stream_transport_from_headers(request.headers) is None
        ):
            data = self.parse_json(await request.get_body())
            if isinstance(data, dict):
                query, variables = data.get("query"), data.get("variables")
                extensions = data.get("extensions")
                if (
                    isinstance(query, (str, type(None)))
                    and isinstance(variables, (dict, type(None)))
                    and isinstance(extensions, (dict, type(None)))
                ):
                    return GraphQLRequestData(
                        query=query,
                        variables=variables,
                        operation_name=data.get("operationName"),
                        extensions=extensions,
                        protocol="http",
                    )
        return await super().parse_http_body(request)

    def encode_json(self, data: object) -> bytes:
        return dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        # Python's decoder, as Strawberry's: it takes NaN and lone surrogates, which the schema
        # refuses as variable values with a typed error (app/graphql/variables.py). What it
        # cannot decode at all is a JSON error, which Strawberry answers as a bad request (and a
        # WebSocket closes with 4400) rather than a 500.
        try:
            return json.loads(data)
        except (UnicodeDecodeError, RecursionError) as exc:
            raise json.JSONDecodeError(f"not JSON: {type(exc).__name__}", "", 0) from None

    def parse_json(self, data: str | bytes) -> Any:
        # The body, GET's variables / extensions and multipart's operations / map: each an object
        # (a list is a batch, refused as such). JSON null means none.
        value = super().parse_json(data)
        if value is None:
            return {}
        if not isinstance(value, (dict, list)):
            kind = "string" if isinstance(value, str) else "boolean" if isinstance(value, bool) else "number"
            raise HTTPException(400, f"Expected a JSON object, got a {kind}.")
        return value
