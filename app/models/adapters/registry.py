"""The one registry of model adapters: names, the kinds each serves, their config schemas.

``validate_config`` is the single check a model entry passes before it is stored or run, and
the GraphQL descriptions of ``adapter`` and ``config`` are generated here, so the names, kinds
and bounds a client reads are the ones enforced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import KINDS, ModelAdapter
from .errors import UnknownAdapter
from .image_classifier import ImageClassifierAdapter
from .null import NullAdapter
from .object_detector import ObjectDetectorAdapter
from .onnx_model import OnnxModelAdapter
from .remote import KServeV2Adapter, LabelStudioMLAdapter
from .text_classifiers import SentimentAdapter, TextTopicAdapter
from .text_regions import TextRegionAdapter

ADAPTERS: dict[str, type[ModelAdapter]] = {}


def register(cls: type[ModelAdapter]) -> type[ModelAdapter]:
    ADAPTERS[cls.name] = cls
    return cls


register(NullAdapter)
register(ImageClassifierAdapter)
register(ObjectDetectorAdapter)
register(TextRegionAdapter)
register(TextTopicAdapter)
register(SentimentAdapter)
register(OnnxModelAdapter)
register(KServeV2Adapter)
register(LabelStudioMLAdapter)


def adapter_class(name: str) -> type[ModelAdapter]:
    """The adapter registered as ``name``; raises ``UnknownAdapter``."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise UnknownAdapter(name, sorted(ADAPTERS)) from None


def validate_config(
    adapter: str, kind: str, config: Mapping[str, Any] | None, *, zero_shot: bool | None = None
) -> dict[str, Any]:
    """The config a model of ``kind`` on ``adapter`` stores and runs with (the given keys, as
    JSON), or the first reason it cannot run:

    * ``UnknownAdapter`` (field ``adapter``): no such adapter;
    * ``AdapterMismatch`` (``adapter``, ``zeroShot`` or ``config.kind``): the adapter does not
      serve that kind, or cannot be zero-shot;
    * ``InvalidConfig`` (``config.<path>``): unknown key, wrong type, value out of bounds.

    ``zero_shot`` is checked only when given (a topic model that is not zero-shot needs
    ``config.concepts``). All three are ``AdapterError``: permanent, never worth a retry.
    """
    cls = adapter_class(adapter)
    cls.check_kind(str(kind))
    options = cls.config_schema.load(config, cls.name)
    cls.check_model(str(kind), options, zero_shot)
    return options.stored()


# --- generated documentation -----------------------------------------------------------------


def describe_adapters() -> str:
    """``name`` (kinds) for every adapter, for the GraphQL description of ``adapter``."""
    parts = []
    for name, cls in ADAPTERS.items():
        kinds = "any kind" if cls.kinds >= set(KINDS) else ", ".join(k for k in KINDS if k in cls.kinds)
        parts.append(f"`{name}` ({kinds}{', zero-shot' if cls.zero_shot else ''})")
    return "The inference adapter, one of: " + "; ".join(parts) + "."


def _bounds(prop: dict[str, Any]) -> str:
    low = f">{_json(prop['exclusiveMinimum'])}" if "exclusiveMinimum" in prop else _json(prop.get("minimum"))
    high = f"<{_json(prop['exclusiveMaximum'])}" if "exclusiveMaximum" in prop else _json(prop.get("maximum"))
    if low or high:
        return f" {low}..{high}"
    if "maxItems" in prop:
        return f" of at most {prop['maxItems']}"
    if "maxLength" in prop:
        return f" of at most {prop['maxLength']} characters"
    return ""


def _describe_key(key: str, prop: dict[str, Any], defs: dict[str, Any]) -> str:
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    branch = {**branches[0], **{k: v for k, v in prop.items() if k != "anyOf"}} if branches else prop
    if "$ref" in branch:
        branch = {**defs[branch["$ref"].rsplit("/", 1)[-1]], **branch}
    if "enum" in branch:
        kind = "|".join(str(v) for v in branch["enum"])
    elif branch.get("type") == "array":
        kind = "list"
    else:
        kind = str(branch.get("type", "object"))
    default = f" = {_json(prop['default'], 'null')}" if "default" in prop else ""
    about = f" ({prop['description']})" if "description" in prop else ""
    return f"{key}: {kind}{_bounds(branch)}{default}{about}"


def _json(value: Any, none: str = "") -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def describe_configs() -> str:
    """Every adapter's config keys with types, bounds and defaults."""
    lines = []
    for name, cls in ADAPTERS.items():
        schema = cls.config_schema.model_json_schema()
        defs = schema.get("$defs", {})
        keys = [_describe_key(k, p, defs) for k, p in schema.get("properties", {}).items()]
        lines.append(f"`{name}`: " + ("; ".join(keys) if keys else "no keys"))
    return (
        "Adapter settings (a JSON object). Unknown keys, wrong types and out-of-range values "
        "are refused. " + ". ".join(lines) + "."
    )
