"""GraphQL over HTTP for the client commands.

Every failure becomes a :class:`~app.client.errors.ClientError` with a message a person can act
on: an unreachable server, an answer that is not Labelstream's API, a refused key (HTTP 401,
``UNAUTHENTICATED``), a query error (its ``extensions.code``), or a mutation's typed error member
(``... on Error { code field message }``).
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from app.client.config import Target
from app.client.errors import ClientError, KeyRefused, Unreachable

ERROR_FIELDS = "... on Error { code field message }"


class Api:
    """One server, one key; a connection pool for the life of a command."""

    def __init__(self, target: Target, timeout: float = 120.0) -> None:
        self.target = target
        self.url = target.url
        self.http = httpx.Client(
            base_url=target.url,
            headers={"Authorization": f"Key {target.key}", "User-Agent": "labelstream-cli"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=False,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/graphql"

    # -- requests -------------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException:
            raise Unreachable(f"{self.url} did not answer in time") from None
        except (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise Unreachable(
                f"cannot reach {self.url} ({exc}); is the server running? "
                "Check --url, LABELSTREAM_URL or `labelstream login`"
            ) from None

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 401:
            raise KeyRefused(
                f"{self.url} refused the API key (UNAUTHENTICATED); "
                "check --key / LABELSTREAM_API_KEY or run `labelstream login` again"
            )
        if not isinstance(body, dict) or ("data" not in body and "errors" not in body):
            raise Unreachable(
                f"{self.url}/graphql answered HTTP {response.status_code} "
                f"({response.headers.get('content-type', 'no content type')}), not a GraphQL "
                "response: is this a Labelstream server?"
            )
        errors = body.get("errors") or []
        if errors:
            first: dict[str, Any] = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
            ext = first.get("extensions") or {}
            if ext.get("code") == "UNAUTHENTICATED":
                raise KeyRefused(f"{self.url} refused the API key: {first.get('message')}")
            raise ClientError(str(first.get("message")), code=ext.get("code"), field=ext.get("field"))
        data = body.get("data")
        return data if isinstance(data, dict) else {}

    def query(self, document: str, **variables: Any) -> dict[str, Any]:
        """The ``data`` of a query; a GraphQL error raises."""
        with self._guard():
            response = self.http.post("/graphql", json={"query": document, "variables": variables})
        return self._answer(response)

    def mutate(self, document: str, name: str, **variables: Any) -> dict[str, Any]:
        """The success member of mutation ``name``'s result union; a typed error member raises."""
        return success(self.query(document, **variables)[name])

    def upload(
        self, document: str, variables: dict[str, Any], files: Mapping[str, Path | bytes]
    ) -> dict[str, Any]:
        """A GraphQL multipart request; ``files`` maps a variable path (``inputs.0.image``) to
        a file (or its bytes)."""
        names = list(files)
        operations = json.dumps({"query": document, "variables": variables})
        mapping = json.dumps({str(k): [f"variables.{name}"] for k, name in enumerate(names)})
        parts: list[tuple[str, Any]] = [("operations", (None, operations)), ("map", (None, mapping))]
        for k, name in enumerate(names):
            source = files[name]
            if isinstance(source, Path):
                mime = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
                parts.append((str(k), (source.name, source.read_bytes(), mime)))
            else:
                parts.append((str(k), (f"{k}.bin", source, "application/octet-stream")))
        with self._guard():
            response = self.http.post("/graphql", files=parts)
        return self._answer(response)

    def download(self, path: str, params: dict[str, str], dest: Path) -> int:
        """GET ``path`` into ``dest`` (written whole or not at all); the bytes written."""
        tmp = dest.with_name(dest.name + ".part")
        with self._guard(), self.http.stream("GET", path, params=params) as response:
            if response.status_code != 200:
                response.read()
                self._refuse(response)
            size = 0
            with tmp.open("wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
                    size += len(chunk)
        tmp.replace(dest)
        return size

    def _refuse(self, response: httpx.Response) -> None:
        if response.status_code == 401:
            self._answer(response)
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        raise ClientError(
            str(error.get("message") or f"HTTP {response.status_code}"),
            code=error.get("code"),
            field=error.get("field"),
        )

    def pages(
        self, document: str, path: Sequence[str], page_size: int = 50, **variables: Any
    ) -> Iterator[dict[str, Any]]:
        """Every node of a Relay connection: ``document`` takes ``$first`` and ``$after`` and
        selects ``nodes`` and ``pageInfo { hasNextPage endCursor }`` at ``path``."""
        after: str | None = None
        while True:
            data: Any = self.query(document, first=page_size, after=after, **variables)
            for key in path:
                data = data[key]
            yield from data["nodes"]
            if not data["pageInfo"]["hasNextPage"]:
                return
            after = data["pageInfo"]["endCursor"]


def success(result: dict[str, Any]) -> dict[str, Any]:
    """A mutation result union's success member, or its typed error raised."""
    if result.get("code") and "message" in result:
        raise ClientError(str(result["message"]), code=str(result["code"]), field=result.get("field"))
    return result
