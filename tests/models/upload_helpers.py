"""Uploading ONNX models through the real API (GraphQL multipart requests)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import Caller
from tests.inputs.helpers import multipart

MODEL_FIELDS = """id name kind adapter conceptsCount config
  activeVersion { id number layout sha256 sizeBytes sourceUrl }
  versions(first: 10) { nodes { id number } pageInfo { hasNextPage } }"""

CREATE = f"""mutation($input: CreateModelInput!) {{ createModel(input: $input) {{
  __typename ... on ModelSuccess {{ model {{ {MODEL_FIELDS} }} }}
  ... on Error {{ code field message }} }} }}"""

CREATE_VERSION = f"""mutation($input: CreateModelVersionInput!) {{ createModelVersion(input: $input) {{
  __typename ... on ModelVersionSuccess {{ model {{ {MODEL_FIELDS} }} version {{ id number layout }} }}
  ... on Error {{ code field message }} }} }}"""


def concepts_input(names: list[str] | None, ids: list[str] | None = None) -> list[dict[str, str]] | None:
    if names is None:
        return None
    return [{"id": i, "name": n} for i, n in zip(ids or names, names, strict=True)]


async def upload_model(
    http: httpx.AsyncClient,
    caller: Caller,
    app_id: str,
    data: bytes,
    *,
    kind: str = "DETECTOR",
    name: str = "mine",
    concepts: list[dict[str, str]] | None = None,
    config: dict[str, Any] | None = None,
    adapter: str = "onnx",
) -> dict[str, Any]:
    """``createModel`` with the file as a multipart part; returns the result union member."""
    variables: dict[str, Any] = {
        "input": {"appId": app_id, "name": name, "kind": kind, "adapter": adapter, "file": None}
    }
    if concepts is not None:
        variables["input"]["concepts"] = concepts
    if config is not None:
        variables["input"]["config"] = config
    body = await multipart(
        http, caller, CREATE, variables, {"input.file": ("model.onnx", data, "application/octet-stream")}
    )
    result: dict[str, Any] = body["data"]["createModel"]
    return result


async def upload_version(
    http: httpx.AsyncClient,
    caller: Caller,
    model_id: str,
    data: bytes,
    *,
    concepts: list[dict[str, str]] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    variables: dict[str, Any] = {"input": {"modelId": model_id, "file": None}}
    if concepts is not None:
        variables["input"]["concepts"] = concepts
    if config is not None:
        variables["input"]["config"] = config
    body = await multipart(
        http,
        caller,
        CREATE_VERSION,
        variables,
        {"input.file": ("model.onnx", data, "application/octet-stream")},
    )
    result: dict[str, Any] = body["data"]["createModelVersion"]
    return result
