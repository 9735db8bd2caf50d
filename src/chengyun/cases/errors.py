"""Errors raised by case actions; each carries a message for the user."""

from __future__ import annotations


class CaseError(Exception):
    status_code = 400
    code = "case_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = str(message)
        self.field = field


class InvalidTransition(CaseError):
    status_code = 409
    code = "invalid_transition"


class CaseConflict(CaseError):
    """Somebody else changed the case first."""

    status_code = 409
    code = "conflict"


class CaseForbidden(CaseError):
    status_code = 403
    code = "forbidden"


class CaseInvalid(CaseError):
    status_code = 400
    code = "invalid"
