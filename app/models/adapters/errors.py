"""Why a model entry cannot run: its adapter name, its kind or its config.

    ValidationFailed (app.core.errors)
    └── AdapterError (also a ValueError)   permanent: the same entry fails the same way every time
        ├── UnknownAdapter                 no adapter of that name        field ``adapter``
        ├── AdapterMismatch                the adapter cannot serve that kind / zero-shot use
        ├── InvalidConfig                  unknown key, wrong type, out-of-range value
        │                                  field ``config.<path>``, code from the failed rule
        └── ModelRejected                  an uploaded model file that cannot serve: it does not
                                           load, fits no layout, or answers nonsense (``file``)

They are domain errors, so the registry service maps them to typed GraphQL errors unchanged,
and a worker can tell them from transient failures (retrying never helps).
"""

from __future__ import annotations

from app.core.errors import ErrorCode, ValidationFailed


class AdapterError(ValidationFailed, ValueError):
    """A model that cannot run, whatever is retried; ``code`` and ``field`` say why and where."""


class UnknownAdapter(AdapterError):
    default_code = ErrorCode.UNKNOWN_ADAPTER

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown model adapter {name!r}; known: {', '.join(known)}",
            field="adapter",
        )
        self.name = name


class AdapterMismatch(AdapterError):
    default_code = ErrorCode.ADAPTER_MISMATCH


class InvalidConfig(AdapterError):
    default_code = ErrorCode.INVALID


class ModelRejected(AdapterError):
    """An uploaded model refused by the upload check; ``code`` is one of ``MODEL_LOAD_FAILED``,
    ``UNSUPPORTED_MODEL_LAYOUT``, ``MODEL_OUTPUT_INVALID``, ``CONCEPT_COUNT_MISMATCH``."""

    default_code = ErrorCode.MODEL_LOAD_FAILED
