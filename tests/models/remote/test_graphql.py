"""Registering a model on an inference server through the API: typed errors for bad configs."""

from __future__ import annotations

from typing import Any

from tests.factories import Api, world

CREATE = """mutation($i: CreateModelInput!) { createModel(input: $i) {
  __typename ... on ModelSuccess { model { id adapter config } } ... on Error { code field message } } }"""


async def create(
    api: Api, config: dict[str, Any], adapter: str = "kserve-v2", kind: str = "CLASSIFIER"
) -> dict[str, Any]:
    w = await world(api)
    data = await api.gql(
        w.owner,
        CREATE,
        i={
            "appId": w.app_id,
            "name": "served",
            "kind": kind,
            "adapter": adapter,
            "config": config,
            "concepts": [{"id": "cat", "name": "cat"}],
        },
    )
    result: dict[str, Any] = data["createModel"]
    return result


async def test_a_server_model_is_stored_with_its_config(api: Api) -> None:
    result = await create(
        api, {"url": "http://models.example:8080/", "model_name": "resnet", "labels": ["cat"]}
    )
    assert result["__typename"] == "ModelSuccess", result
    assert result["model"]["config"]["url"] == "http://models.example:8080"  # the trailing slash dropped


async def test_a_bad_server_url_is_a_typed_error(api: Api) -> None:
    result = await create(api, {"url": "gopher://models", "model_name": "resnet"})
    assert (result["__typename"], result["code"], result["field"]) == (
        "ValidationError",
        "INVALID",
        "config.url",
    )


async def test_a_label_studio_backend_for_the_wrong_kind_is_a_typed_error(api: Api) -> None:
    result = await create(
        api, {"url": "http://backend:9090"}, adapter="ls-ml-backend", kind="TEXT_CLASSIFIER"
    )
    assert (result["code"], result["field"]) == ("ADAPTER_MISMATCH", "adapter")


async def test_an_encoded_image_server_model_is_stored_and_a_bad_input_format_refused(api: Api) -> None:
    good = await create(
        api,
        {"url": "http://models.example:8080", "model_name": "resnet", "input": {"format": "encoded_image"}},
    )
    assert good["__typename"] == "ModelSuccess", good
    assert good["model"]["config"]["input"] == {"format": "encoded_image"}
    bad = await create(api, {"url": "http://models.example", "model_name": "m", "input": {"format": "jpeg"}})
    assert (bad["__typename"], bad["code"], bad["field"]) == (
        "ValidationError",
        "INVALID",
        "config.input.format",
    )
