"""Errors as values: every failure the server reports is a FhirError carrying an OperationOutcome.

Handlers raise FhirError; the HTTP layer turns it into the response with the right status. Nothing
here ever includes a stack trace or request content beyond what the client itself sent.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import Any

MAX_DIAGNOSTICS = 1000


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue (https://hl7.org/fhir/R4/operationoutcome.html)."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        diagnostics = self.diagnostics
        if len(diagnostics) > MAX_DIAGNOSTICS:  # a message quoting thousands of a client's characters
            diagnostics = diagnostics[:MAX_DIAGNOSTICS] + "…"
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": diagnostics}
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue.to_json() for issue in issues]}


@dataclass
class FhirError(Exception):
    """A failure with its HTTP status and the issues that explain it."""

    status: int
    issues: list[Issue]
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(issue.diagnostics for issue in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def fail(status: int, code: str, diagnostics: str, *expression: str) -> FhirError:
    """Shorthand for the common single-issue error."""
    return FhirError(status, [Issue(code, diagnostics, expression=tuple(expression))])


def bad_request(diagnostics: str, *expression: str) -> FhirError:
    return fail(400, "invalid", diagnostics, *expression)


def not_found(diagnostics: str) -> FhirError:
    return fail(404, "not-found", diagnostics)


def log_unexpected(log: logging.Logger, error: BaseException, what: str) -> None:
    """Log an unexpected failure by its class and the code's frames, never its message: messages and
    request paths can carry patient data, and application logs must not."""
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("unexpected %s handling %s\n%s", type(error).__name__, what, frames)


def internal_error(prefix: str = "") -> FhirError:
    return FhirError(500, [Issue("exception", f"{prefix}Internal server error; the incident has been logged")])
