"""The one error a request handler raises: a status code and a one-line message, never a traceback."""

from __future__ import annotations


class HttpError(Exception):
    """Answered as ``{"error": message}`` (the key Triton's clients read) with ``status`` and ``headers``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def __reduce__(self) -> tuple:
        # Raised in the v2 JSON decoder's worker process too; pickle's default would lose the status.
        return HttpError, (self.status, self.message, self.headers)
