"""Domain errors, raised by services and mapped to GraphQL in one place (app/graphql/errors.py).

    DomainError(code, message, field)        base: every error has a machine-readable code
    ├── ValidationFailed                     the input is malformed or out of range
    ├── NotFound                             unknown id, or an id of an app the caller is not in
    ├── PermissionDenied                     the caller is in the app but lacks the role
    ├── Conflict                             duplicates, objects still in use, last owner
    └── Unauthenticated                      missing, malformed, unknown or revoked API key

Another app's object answers exactly like an unknown one (``NotFound``), so ids leak nothing.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    # validation
    INVALID = "INVALID"
    REQUIRED = "REQUIRED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    TOO_LONG = "TOO_LONG"
    TOO_MANY = "TOO_MANY"
    EMPTY = "EMPTY"
    INVALID_IMAGE = "INVALID_IMAGE"
    INVALID_URL = "INVALID_URL"
    INVALID_GEOMETRY = "INVALID_GEOMETRY"
    INVALID_THRESHOLD = "INVALID_THRESHOLD"
    INVALID_CURSOR = "INVALID_CURSOR"
    CONCEPT_NOT_PRODUCED = "CONCEPT_NOT_PRODUCED"
    MODEL_HAS_NO_CONCEPTS = "MODEL_HAS_NO_CONCEPTS"
    # models: an adapter name, kind or config that cannot run
    UNKNOWN_ADAPTER = "UNKNOWN_ADAPTER"
    ADAPTER_MISMATCH = "ADAPTER_MISMATCH"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    WRONG_TYPE = "WRONG_TYPE"
    # lookup and access
    NOT_FOUND = "NOT_FOUND"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    # state
    DUPLICATE = "DUPLICATE"
    IN_USE = "IN_USE"
    LAST_OWNER = "LAST_OWNER"
    ALREADY_REVOKED = "ALREADY_REVOKED"
    # registry, tasks, annotations
    MISSING_ROLE = "MISSING_ROLE"
    # datasets, inputs
    TOO_LARGE = "TOO_LARGE"
    # task lifecycle
    INVALID_STATE = "INVALID_STATE"
    NOTHING_TO_RETRY = "NOTHING_TO_RETRY"
    NO_QUEUE = "NO_QUEUE"
    # review, labeling queues, dataset versions and exports
    NOT_ASSIGNED = "NOT_ASSIGNED"
    NOT_AWAITING_REVIEW = "NOT_AWAITING_REVIEW"
    CONCEPT_NOT_IN_TASK = "CONCEPT_NOT_IN_TASK"
    NOT_YOUR_ITEM = "NOT_YOUR_ITEM"
    SELECTION_REQUIRED = "SELECTION_REQUIRED"
    BUSY = "BUSY"
    NO_REGION = "NO_REGION"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    VERSION_NOT_READY = "VERSION_NOT_READY"
    # uploaded models (ONNX): the file cannot load, its inputs/outputs fit no supported layout,
    # its outputs on a sample image are nonsense, or its classes differ from its concepts
    MODEL_LOAD_FAILED = "MODEL_LOAD_FAILED"
    UNSUPPORTED_MODEL_LAYOUT = "UNSUPPORTED_MODEL_LAYOUT"
    MODEL_OUTPUT_INVALID = "MODEL_OUTPUT_INVALID"
    CONCEPT_COUNT_MISMATCH = "CONCEPT_COUNT_MISMATCH"
    # similarity search
    EMBEDDING_PENDING = "EMBEDDING_PENDING"
    # imported predictions
    UNKNOWN_IMAGE = "UNKNOWN_IMAGE"
    UNKNOWN_CATEGORY = "UNKNOWN_CATEGORY"


class DomainError(Exception):
    default_code = ErrorCode.INVALID

    def __init__(self, message: str, *, code: ErrorCode | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field

    def at(self, prefix: str) -> DomainError:
        """Return the error with its field path prefixed, e.g. ``inputs.3`` + ``image``."""
        self.field = f"{prefix}.{self.field}" if self.field else prefix
        return self


class ValidationFailed(DomainError):
    default_code = ErrorCode.INVALID


class NotFound(DomainError):
    default_code = ErrorCode.NOT_FOUND

    def __init__(self, what: str, ident: str | None = None, *, field: str | None = None) -> None:
        text = f"{what} {ident!r} not found" if ident is not None else f"{what} not found"
        super().__init__(text, code=ErrorCode.NOT_FOUND, field=field)


class PermissionDenied(DomainError):
    default_code = ErrorCode.PERMISSION_DENIED


class Conflict(DomainError):
    default_code = ErrorCode.DUPLICATE


class Unauthenticated(DomainError):
    default_code = ErrorCode.UNAUTHENTICATED
