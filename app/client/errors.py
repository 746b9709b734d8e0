"""What the client commands report instead of a traceback: a message and an exit code.

Exit codes: 1 the server refused the operation (or some items failed), 2 bad usage or local
input (not logged in, malformed dataset), 3 the server could not be reached or did not speak
Labelstream's API, 4 the API key was refused.
"""

from __future__ import annotations

FAILED = 1
USAGE = 2
UNREACHABLE = 3
UNAUTHENTICATED = 4


class ClientError(Exception):
    """A failure to show the user as one message, then exit with ``exit_code``."""

    exit_code = FAILED

    def __init__(self, message: str, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field

    def __str__(self) -> str:
        where = f" (at {self.field})" if self.field else ""
        return f"{self.code}: {self.message}{where}" if self.code else self.message


class UsageError(ClientError):
    exit_code = USAGE


class Unreachable(ClientError):
    exit_code = UNREACHABLE


class KeyRefused(ClientError):
    exit_code = UNAUTHENTICATED
