"""Models that cannot run are refused at createModel / updateModel, over HTTP.

Given an app, when a model names an unknown adapter, an adapter that does not serve its kind, or
a config with an unknown key, a wrong type or a value outside the adapter's bounds, then the
mutation answers a ValidationError naming the field with a code, and nothing is stored.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.models.adapters import ADAPTERS, KINDS
from tests.factories import Api, world
from tests.registry.factories import MODEL_FIELDS, concepts, create_model, model

UPDATE_MODEL = "mutation($i: UpdateModelInput!) { updateModel(input: $i) { " + MODEL_FIELDS + " } }"
OWN_MODELS = "query($a: ID!) { models(appId: $a, builtin: false) { nodes { id adapter config } } }"
INPUT_FIELDS = """query($t: String!) { __type(name: $t) { inputFields { name description } } }"""

BOX = {"top": 0.1, "left": 0.2, "bottom": 0.5, "right": 0.6}


def refusal(result: dict[str, Any]) -> tuple[str, str | None]:
    assert result["__typename"] == "ValidationError", result
    assert result["message"], result
    return result["code"], result["field"]


async def own_models(api: Api, caller: Any, app_id: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = (await api.gql(caller, OWN_MODELS, a=app_id))["models"]["nodes"]
    return nodes


REFUSED: list[tuple[str, dict[str, Any], tuple[str, str]]] = [
    # unknown adapter (it used to be stored; the batch then died with KeyError)
    ("unknown adapter", {"adapter": "minilm-topics"}, ("UNKNOWN_ADAPTER", "adapter")),
    ("adapter name with a typo", {"adapter": "Null"}, ("UNKNOWN_ADAPTER", "adapter")),
    # an adapter that does not serve the model's kind
    ("detector as a classifier", {"kind": "CLASSIFIER", "adapter": "general-object-detector"}, ("ADAPTER_MISMATCH", "adapter")),
    ("image classifier for texts", {"kind": "TEXT_CLASSIFIER", "adapter": "general-image-classifier"}, ("ADAPTER_MISMATCH", "adapter")),
    ("sentiment as a segmenter", {"kind": "SEGMENTER", "adapter": "text-sentiment"}, ("ADAPTER_MISMATCH", "adapter")),
    ("null reporting another kind", {"kind": "CLASSIFIER", "config": {"kind": "DETECTOR"}}, ("ADAPTER_MISMATCH", "config.kind")),
    ("zero-shot detector", {"kind": "DETECTOR", "adapter": "general-object-detector", "zeroShot": True}, ("ADAPTER_MISMATCH", "zeroShot")),
    ("onnx without its file", {"kind": "DETECTOR", "adapter": "onnx"}, ("REQUIRED", "file")),
    ("topic model with nothing to score", {"kind": "TEXT_CLASSIFIER", "adapter": "text-topic-classifier"}, ("REQUIRED", "config.concepts")),
    # unknown keys
    ("unknown key", {"config": {"threshold": 0.2}}, ("UNKNOWN_KEY", "config.threshold")),
    ("misspelt key", {"config": {"delayMs": 10}}, ("UNKNOWN_KEY", "config.delayMs")),
    ("key of another adapter", {"config": {"intra_op_num_threads": 2}}, ("UNKNOWN_KEY", "config.intra_op_num_threads")),
    ("any key for an adapter without config", {"kind": "TEXT_CLASSIFIER", "adapter": "text-sentiment", "config": {"lexicon": "x"}}, ("UNKNOWN_KEY", "config.lexicon")),
    ("unknown key in a prediction", {"config": {"predictions": [{"concept": "a", "confidence": 0.5, "colour": "red"}]}}, ("UNKNOWN_KEY", "config.predictions.0.colour")),
    # wrong types
    ("delay as a string", {"config": {"delay_ms": "100"}}, ("WRONG_TYPE", "config.delay_ms")),
    ("threads as a string", {"kind": "DETECTOR", "adapter": "general-object-detector", "config": {"intra_op_num_threads": "4"}}, ("WRONG_TYPE", "config.intra_op_num_threads")),
    ("fractional top_k", {"adapter": "general-image-classifier", "config": {"top_k": 2.5}}, ("WRONG_TYPE", "config.top_k")),
    ("boolean as a number", {"adapter": "general-image-classifier", "config": {"center_crop": 1}}, ("WRONG_TYPE", "config.center_crop")),
    ("predictions as an object", {"config": {"predictions": {"concept": "a"}}}, ("WRONG_TYPE", "config.predictions")),
    ("confidence as a string", {"config": {"predictions": [{"concept": "a", "confidence": "high"}]}}, ("WRONG_TYPE", "config.predictions.0.confidence")),
    ("scoring not one of the choices", {"kind": "TEXT_CLASSIFIER", "adapter": "text-topic-classifier", "zeroShot": True, "config": {"scoring": "cosine"}}, ("INVALID", "config.scoring")),
    # bounds: threads, delays, score and NMS parameters, negative values
    ("200 threads", {"adapter": "general-image-classifier", "config": {"intra_op_num_threads": 200}}, ("OUT_OF_RANGE", "config.intra_op_num_threads")),
    ("9 threads", {"kind": "SEGMENTER", "adapter": "text-region-detector", "config": {"intra_op_num_threads": 9}}, ("OUT_OF_RANGE", "config.intra_op_num_threads")),
    ("no threads", {"kind": "DETECTOR", "adapter": "general-object-detector", "config": {"intra_op_num_threads": 0}}, ("OUT_OF_RANGE", "config.intra_op_num_threads")),
    ("a 20 s delay per input", {"config": {"delay_ms": 20000}}, ("OUT_OF_RANGE", "config.delay_ms")),
    ("negative delay", {"config": {"delay_ms": -1}}, ("OUT_OF_RANGE", "config.delay_ms")),
    ("detector scoring everything, suppressing nothing", {"kind": "DETECTOR", "adapter": "general-object-detector", "config": {"min_confidence": 0, "iou_threshold": 1}}, ("OUT_OF_RANGE", "config.min_confidence")),
    ("NMS that suppresses nothing", {"kind": "DETECTOR", "adapter": "general-object-detector", "config": {"iou_threshold": 1}}, ("OUT_OF_RANGE", "config.iou_threshold")),
    ("negative NMS overlap", {"kind": "DETECTOR", "adapter": "general-object-detector", "config": {"iou_threshold": -0.5}}, ("OUT_OF_RANGE", "config.iou_threshold")),
    ("a million detections", {"kind": "DETECTOR", "adapter": "general-object-detector", "config": {"max_detections": 1000000}}, ("OUT_OF_RANGE", "config.max_detections")),
    ("negative min_confidence", {"adapter": "general-image-classifier", "config": {"min_confidence": -0.1}}, ("OUT_OF_RANGE", "config.min_confidence")),
    ("min_confidence above 1", {"kind": "SEGMENTER", "adapter": "text-region-detector", "config": {"min_confidence": 1.5}}, ("OUT_OF_RANGE", "config.min_confidence")),
    ("no classes kept", {"adapter": "general-image-classifier", "config": {"top_k": 0}}, ("OUT_OF_RANGE", "config.top_k")),
    ("zero temperature", {"kind": "TEXT_CLASSIFIER", "adapter": "text-topic-classifier", "zeroShot": True, "config": {"temperature": 0}}, ("OUT_OF_RANGE", "config.temperature")),
    ("confidence above 1", {"config": {"predictions": [{"concept": "a", "confidence": 1.5}]}}, ("OUT_OF_RANGE", "config.predictions.0.confidence")),
    ("box outside the image", {"config": {"predictions": [{"concept": "a", "confidence": 0.5, "region": BOX | {"bottom": 2}}]}}, ("OUT_OF_RANGE", "config.predictions.0.region.bottom")),
    ("upside-down box", {"config": {"predictions": [{"concept": "a", "confidence": 0.5, "region": BOX | {"top": 0.9}}]}}, ("INVALID_GEOMETRY", "config.predictions.0.region")),
    # empty and huge
    ("empty concept", {"config": {"predictions": [{"concept": "", "confidence": 0.5}]}}, ("EMPTY", "config.predictions.0.concept")),
    ("empty template", {"kind": "TEXT_CLASSIFIER", "adapter": "text-topic-classifier", "zeroShot": True, "config": {"template": ""}}, ("EMPTY", "config.template")),
    ("template padding a huge string", {"kind": "TEXT_CLASSIFIER", "adapter": "text-topic-classifier", "zeroShot": True, "config": {"template": "{name:>999999999}"}}, ("INVALID", "config.template")),
    ("101 predictions per input", {"config": {"predictions": [{"concept": f"c{i}", "confidence": 0.5} for i in range(101)]}}, ("TOO_MANY", "config.predictions")),
    ("1001 topics", {"kind": "TEXT_CLASSIFIER", "adapter": "text-topic-classifier", "config": {"concepts": [f"t{i}" for i in range(1001)]}}, ("TOO_MANY", "config.concepts")),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "expected"), [(f, e) for _, f, e in REFUSED], ids=[r[0] for r in REFUSED])
async def test_create_model_refuses_a_model_that_cannot_run(
    api: Api, fields: dict[str, Any], expected: tuple[str, str]
) -> None:
    w = await world(api)
    result = await create_model(api, w.owner, w.app_id, **fields)
    assert refusal(result) == expected
    assert await own_models(api, w.owner, w.app_id) == []


ACCEPTED: list[tuple[str, str, dict[str, Any] | None, bool]] = [
    ("CLASSIFIER", "null", None, False),
    ("DETECTOR", "null", {"kind": "DETECTOR", "predictions": [{"concept": "a", "confidence": 0.8, "region": BOX}]}, False),
    ("SEGMENTER", "null", {"predictions": [{"concept": "a", "confidence": 0.3, "region": {"points": [[0, 0], [0, 1], [1, 1]]}}], "delay_ms": 1000}, False),
    ("TEXT_CLASSIFIER", "null", {"predictions": [], "concepts": ["a"]}, True),
    ("CLASSIFIER", "general-image-classifier", {"top_k": 1000, "min_confidence": 0, "center_crop": True, "intra_op_num_threads": 8, "allow_spinning": True}, False),
    ("DETECTOR", "general-object-detector", {"min_confidence": 0.001, "iou_threshold": 0.99, "max_detections": 300}, False),
    ("SEGMENTER", "text-region-detector", {"min_confidence": 0, "use_angle_cls": False, "intra_op_num_threads": 1}, False),
    ("TEXT_CLASSIFIER", "text-topic-classifier", {"template": "A text on {name} ({{topic}})", "scoring": "sigmoid", "top_k": 3}, True),
    ("TEXT_CLASSIFIER", "text-topic-classifier", {"concepts": ["sports", "finance"]}, False),
    ("TEXT_CLASSIFIER", "text-sentiment", {}, False),
    ("CLASSIFIER", "kserve-v2", {"url": "http://10.0.0.5:8000", "model_name": "resnet", "model_version": "2", "generic": {"input_size": [299, 299], "resize": "letterbox", "layout": "NHWC"}, "labels": ["a", "b"], "batch_size": 16, "max_concurrency": 4}, False),
    ("DETECTOR", "kserve-v2", {"url": "https://models.example", "model_name": "nanodet", "preprocess": "nanodet", "binary_data": True}, False),
    ("SEGMENTER", "ls-ml-backend", {"url": "http://backend:9090", "labels": ["road"], "image_format": "jpeg", "retries": 0}, False),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "adapter", "config", "zero_shot"), ACCEPTED)
async def test_create_model_accepts_every_adapter_within_its_bounds(
    api: Api, kind: str, adapter: str, config: dict[str, Any] | None, zero_shot: bool
) -> None:
    w = await world(api)
    result = await create_model(
        api, w.owner, w.app_id, kind=kind, adapter=adapter, config=config, zeroShot=zero_shot
    )
    assert result["__typename"] == "ModelSuccess", result
    assert result["model"]["config"] == (config or {})


async def test_the_accepted_cases_cover_every_adapter_and_kind() -> None:
    # an uploaded model (adapter onnx) is a checked file: tests/models/test_onnx_upload.py
    assert {a for _, a, _, _ in ACCEPTED} == set(ADAPTERS) - {"onnx"}
    assert {k for k, _, _, _ in ACCEPTED} == set(KINDS)


async def test_update_model_refuses_an_adapter_or_config_that_cannot_run(api: Api) -> None:
    w = await world(api)
    preds = {"predictions": [{"concept": "cat", "confidence": 0.9}]}
    model_id = await model(api, w.owner, w.app_id, ("cat",), config=preds)

    async def update(**fields: Any) -> tuple[str, str | None]:
        result = (await api.gql(w.owner, UPDATE_MODEL, i={"id": model_id} | fields))["updateModel"]
        return refusal(result)

    assert await update(adapter="no-such-adapter") == ("UNKNOWN_ADAPTER", "adapter")
    assert await update(adapter="general-object-detector", config={}) == ("ADAPTER_MISMATCH", "adapter")
    # a new adapter is checked with the config the model keeps
    assert await update(adapter="general-image-classifier") == ("UNKNOWN_KEY", "config.predictions")
    assert await update(config={"delay_ms": 60000}) == ("OUT_OF_RANGE", "config.delay_ms")
    assert await update(config={"predictions": "cat"}) == ("WRONG_TYPE", "config.predictions")
    assert await update(name="Renamed", config={"kind": "SEGMENTER"}) == ("ADAPTER_MISMATCH", "config.kind")
    classifier = await model(api, w.owner, w.app_id, ("n01",), adapter="general-image-classifier")
    result = (await api.gql(w.owner, UPDATE_MODEL, i={"id": classifier, "zeroShot": True}))["updateModel"]
    assert refusal(result) == ("ADAPTER_MISMATCH", "zeroShot")
    # nothing of a refused update was stored
    stored = {m["id"]: m for m in await own_models(api, w.owner, w.app_id)}
    assert stored[model_id]["adapter"] == "null" and stored[model_id]["config"] == preds
    # a change that runs is taken, with the new adapter and config checked together
    ok = await api.gql(
        w.owner,
        UPDATE_MODEL,
        i={
            "id": model_id,
            "adapter": "general-image-classifier",
            "config": {"top_k": 3},
            "concepts": concepts("cat"),
        },
    )
    m = ok["updateModel"]["model"]
    assert (m["adapter"], m["config"]) == ("general-image-classifier", {"top_k": 3})


async def test_graphql_describes_the_adapters_and_bounds_it_enforces(api: Api) -> None:
    w = await world(api)
    for input_type in ("CreateModelInput", "UpdateModelInput"):
        fields = (await api.gql(w.owner, INPUT_FIELDS, t=input_type))["__type"]["inputFields"]
        about = {f["name"]: f["description"] or "" for f in fields}
        for name, cls in ADAPTERS.items():
            assert f"`{name}`" in about["adapter"] and f"`{name}`" in about["config"]
            for kind in cls.kinds:
                assert kind in about["adapter"]
            for key in cls.config_schema.model_fields:
                assert f"{key}: " in about["config"], (name, key)
        assert "1..8" in about["config"]  # the thread bound, as enforced
