"""Building apps with real images (scikit-image samples, crops and flips) through the API."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image
from skimage import data as samples

from tests.factories import Api, Caller

CAT = samples.chelsea()
CAT_FLIPPED = np.ascontiguousarray(CAT[:, ::-1])

ADD_INPUTS = """mutation($a: ID!, $items: [AddInputItem!]!) { addInputs(appId: $a, inputs: $items) {
  __typename ... on AddInputsSuccess { inputs { id } errors { index code } } ... on Error { code message } } }"""
ADD_ANNOTATIONS = """mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) { __typename
  ... on AddAnnotationsSuccess { annotations { id } errors { index code field } } ... on Error { code message } } }"""
SIMILAR = """query($id: ID!, $first: Int, $after: String, $f: SimilarityFilter) {
  similarAnnotations(annotationId: $id, first: $first, after: $after, filter: $f) {
    embeddingModel edges { cursor score node { id conceptId inputId status } }
    pageInfo { hasNextPage hasPreviousPage endCursor } } }"""
SIMILAR_INPUTS = """query($id: ID!, $first: Int, $after: String, $f: SimilarityFilter) {
  similarInputs(inputId: $id, first: $first, after: $after, filter: $f) {
    embeddingModel edges { cursor score node { id text } } pageInfo { hasNextPage endCursor } } }"""
BULK = """mutation($i: BulkAnnotationActionInput!) { bulkAnnotationAction(input: $i) { __typename
  ... on BulkAnnotationActionSuccess { changedIds errors { index code field } }
  ... on Error { code field message } } }"""


def png_base64(pixels: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


async def add_inputs(api: Api, caller: Caller, app_id: str, items: list[dict[str, Any]]) -> list[str]:
    data = await api.gql(caller, ADD_INPUTS, a=app_id, items=items)
    result = data["addInputs"]
    assert result["__typename"] == "AddInputsSuccess" and not result["errors"], result
    return [i["id"] for i in result["inputs"]]


async def add_images(api: Api, caller: Caller, app_id: str, images: list[np.ndarray]) -> list[str]:
    return await add_inputs(api, caller, app_id, [{"imageBase64": png_base64(p)} for p in images])


def box(top: float, left: float, bottom: float, right: float) -> dict[str, float]:
    return {"top": top, "left": left, "bottom": bottom, "right": right}


async def annotate(api: Api, caller: Caller, app_id: str, items: list[dict[str, Any]]) -> list[str]:
    data = await api.gql(caller, ADD_ANNOTATIONS, i={"appId": app_id, "annotations": items})
    result = data["addAnnotations"]
    assert result["__typename"] == "AddAnnotationsSuccess" and not result["errors"], result
    return [a["id"] for a in result["annotations"]]


async def similar(api: Api, caller: Caller, annotation_id: str, **variables: Any) -> dict[str, Any]:
    data = await api.gql(caller, SIMILAR, id=annotation_id, **variables)
    result: dict[str, Any] = data["similarAnnotations"]
    return result


def ids(connection: dict[str, Any]) -> list[str]:
    return [e["node"]["id"] for e in connection["edges"]]
