"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error the API returns has a stable `type` URI from `ProblemType`, a title, a status, a
human-readable `detail` and, when one request field is at fault, `field` (a JSON pointer-like
dotted path such as `body.amount`). Clients branch on `type`, never on `detail`.
"""

from __future__ import annotations

import enum
from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:synod:problem:"


class ProblemType(enum.Enum):
    """(slug, HTTP status, title)."""

    VALIDATION = ("validation-error", 422, "The request is not valid")
    UNKNOWN_CHAIN = ("unknown-chain", 422, "Unknown chain")
    UNKNOWN_ASSET = ("unknown-asset", 422, "Unknown asset for this chain")
    INVALID_ADDRESS = ("invalid-address", 422, "Malformed destination address")
    INVALID_AMOUNT = ("invalid-amount", 422, "Invalid amount")
    INVALID_CURSOR = ("invalid-cursor", 422, "Invalid pagination cursor")
    UNAUTHENTICATED = ("unauthenticated", 401, "Missing or invalid API token")
    FORBIDDEN = ("forbidden", 403, "The token's role does not allow this")
    RATE_LIMITED = ("rate-limited", 429, "Too many requests")
    NOT_FOUND = ("not-found", 404, "No such resource")
    DUPLICATE_EXTERNAL_ID = ("duplicate-external-id", 409, "external_id already used")
    IDEMPOTENCY_MISMATCH = (
        "idempotency-key-reused",
        409,
        "Idempotency-Key already used with a different request",
    )
    INVALID_TRANSITION = ("invalid-transition", 409, "The withdrawal's state does not allow this")
    REJECTED = ("rejected", 409, "The ledger refused the transaction")
    LIMIT_REACHED = ("limit-reached", 409, "A limit on this kind of resource is reached")
    BODY_TOO_LARGE = ("body-too-large", 413, "Request body too large")
    HTTP = ("http-error", 400, "The HTTP request cannot be served")  # 405 and the like

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]

    @property
    def title(self) -> str:
        return self.value[2]


class Problem(Exception):
    """Raise from a handler; the app turns it into a problem+json response."""

    def __init__(
        self,
        kind: ProblemType,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.kind.uri,
            "title": self.kind.title,
            "status": self.kind.status,
            "detail": self.detail,
        }
        if self.field:
            body["field"] = self.field
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body

    def response(self, instance: str | None = None) -> JSONResponse:
        return JSONResponse(
            self.body(instance),
            status_code=self.kind.status,
            media_type=PROBLEM_JSON,
            headers=self.headers,
        )
