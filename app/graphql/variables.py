"""Variable values that JSON cannot carry, refused before execution with a typed error.

Python's JSON decoder (the view's, and the WebSocket messages') accepts ``NaN``, ``Infinity`` and
lone UTF-16 surrogates (``"\\ud800"``), none of which is JSON (RFC 8259) or can be stored: MongoDB
and the response encoder refuse the surrogates, and a non-finite number is no measurement,
confidence or metadata value. ``Int`` and ``Float`` variables already refuse non-finite numbers,
but ``String``, ``ID`` and ``JSON`` take anything, so a resolver would fail late with an internal
error. Refusing them here gives the answer the view gives any variable that cannot be coerced:
``extensions.code`` ``GRAPHQL_VALIDATION_FAILED``, naming the variable and where inside it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from app.graphql.limits import Refused

_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _printable(key: object) -> str:
    # a message must itself be encodable: surrogates in a key are shown escaped
    return str(key).encode("utf-8", "backslashreplace").decode("utf-8")


def invalid_variables(variables: Mapping[str, object] | None) -> Refused | None:
    """A value in ``variables`` that JSON cannot carry, as a typed error (an iterative
    walk: the decoder bounds the nesting, this walk does not recurse)."""
    if not variables or not isinstance(variables, Mapping):  # not an object: Strawberry says so
        return None
    if any(_has_surrogate(name) for name in variables):
        return _refused((), "a variable name with a lone UTF-16 surrogate is not valid Unicode")
    stack: list[tuple[object, tuple[object, ...]]] = [(value, (name,)) for name, value in variables.items()]
    while stack:
        value, path = stack.pop()
        problem = None
        if isinstance(value, str):
            if _has_surrogate(value):
                problem = "a lone UTF-16 surrogate is not valid Unicode"
        elif isinstance(value, float):
            if not math.isfinite(value):
                problem = f"{value} is not a JSON number"
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _has_surrogate(key):
                    return _refused(path, "an object key with a lone UTF-16 surrogate is not valid Unicode")
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, index)) for index, item in enumerate(value))
        if problem is not None:
            return _refused(path, problem)
    return None


def _refused(path: tuple[object, ...], problem: str) -> Refused:
    if not path:
        return Refused(f"Invalid variables: {problem}.", extensions={"code": "GRAPHQL_VALIDATION_FAILED"})
    name, inner = path[0], path[1:]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{_printable(p)}" for p in inner)
    at = f" at '{where.lstrip('.')}'" if where else ""
    return Refused(
        f"Variable '${_printable(name)}' got an invalid value{at}: {problem}.",
        extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
    )
