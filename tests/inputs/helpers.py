"""Images made in memory with Pillow, and requests that add inputs the way clients do."""

from __future__ import annotations

import base64
import functools
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import orjson
from PIL import Image

from tests.factories import Api, Caller

INPUT_FIELDS = """id appId kind status width height contentType sizeBytes url text metadata
  datasetIds createdAt imageUrl"""
ADD = f"""mutation($input: AddInputInput!) {{ addInput(input: $input) {{
  __typename ... on InputSuccess {{ input {{ {INPUT_FIELDS} }} }}
  ... on Error {{ code field message }} }} }}"""
ADD_MANY = f"""mutation($a: ID!, $items: [AddInputItem!]!) {{ addInputs(appId: $a, inputs: $items) {{
  __typename ... on AddInputsSuccess {{ inputs {{ {INPUT_FIELDS} }} errors {{ index field code message }} }}
  ... on Error {{ code field message }} }} }}"""


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (4, 3), color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def claims_size(png: bytes, width: int, height: int) -> bytes:
    """A valid small PNG whose header claims other dimensions (a decompression bomb)."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


@functools.cache
def webp_bomb() -> bytes:
    """2,546 bytes of lossless WebP that decode to 8062 x 8062 (65 megapixels, 780 MB of RGBA
    once decoded): the decompression bomb of issue 11."""
    out = io.BytesIO()
    Image.new("RGB", (8062, 8062), "white").save(out, format="WEBP", lossless=True)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def blob_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


async def multipart(
    http: httpx.AsyncClient,
    caller: Caller,
    query: str,
    variables: dict[str, Any],
    files: dict[str, tuple[str, bytes, str]],
) -> dict[str, Any]:
    """POST a GraphQL multipart request: ``files`` maps a variables path (``input.image``) to
    the file part. Returns the response body."""
    mapping = {str(i): [f"variables.{path}"] for i, path in enumerate(files)}
    parts = {str(i): part for i, part in enumerate(files.values())}
    response = await http.post(
        "/graphql",
        data={
            "operations": orjson.dumps({"query": query, "variables": variables}).decode(),
            "map": orjson.dumps(mapping).decode(),
        },
        files=parts,
        headers=caller.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    return body


async def upload(
    http: httpx.AsyncClient,
    caller: Caller,
    app_id: str,
    data: bytes,
    filename: str = "cat.png",
    content_type: str = "image/png",
    **extra: Any,
) -> dict[str, Any]:
    """``addInput`` with the file as a multipart part; returns the result union member."""
    body = await multipart(
        http,
        caller,
        ADD,
        {"input": {"appId": app_id, "image": None, **extra}},
        {"input.image": (filename, data, content_type)},
    )
    result: dict[str, Any] = body["data"]["addInput"]
    return result


async def add(api: Api, caller: Caller, app_id: str, **fields: Any) -> dict[str, Any]:
    """``addInput`` over JSON; returns the result union member."""
    data = await api.gql(caller, ADD, input={"appId": app_id, **fields})
    result: dict[str, Any] = data["addInput"]
    return result


async def text_input(api: Api, caller: Caller, app_id: str, text: str = "hello", **kw: Any) -> str:
    result = await add(api, caller, app_id, text=text, **kw)
    assert result["__typename"] == "InputSuccess", result
    input_id: str = result["input"]["id"]
    return input_id


def json_text(value: Any) -> str:
    """JSON as Python's ``json`` writes it by default: ``NaN``/``Infinity`` literals included,
    which is what some clients send (httpx and orjson refuse or rewrite them)."""
    return json.dumps(value, allow_nan=True)


async def post_loose_json(
    http: httpx.AsyncClient, caller: Caller, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """POST a GraphQL request whose variables may hold NaN or Infinity; returns ``data``."""
    response = await http.post(
        "/graphql",
        content=json_text({"query": query, "variables": variables}),
        headers={**caller.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def loose_multipart(
    http: httpx.AsyncClient,
    caller: Caller,
    query: str,
    variables: dict[str, Any],
    files: dict[str, tuple[str, bytes, str]],
) -> dict[str, Any]:
    """``multipart`` with the operations written by ``json_text`` (NaN allowed)."""
    mapping = {str(i): [f"variables.{path}"] for i, path in enumerate(files)}
    parts = {str(i): part for i, part in enumerate(files.values())}
    response = await http.post(
        "/graphql",
        data={"operations": json_text({"query": query, "variables": variables}), "map": json_text(mapping)},
        files=parts,
        headers=caller.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data
