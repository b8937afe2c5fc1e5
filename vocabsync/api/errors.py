"""The API's error model and the error responses every route documents, defined once.

Every error the API answers has the body ``{"detail": "..."}`` (FastAPI's ``HTTPException``),
except 422, whose body is FastAPI's own validation model (documented by FastAPI itself). Routes
build their ``responses=`` with :func:`error_responses`, so the OpenAPI schema lists each status
code a route can answer, with this one model; the schemathesis run in the test suite checks that
nothing undocumented comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """The body of every error but 422."""

    detail: str = Field(description="What went wrong, and what to do about it.")


NO_VOCABULARY: Final = (
    "No vocabulary loaded yet: PostgreSQL and Redis are unreachable (see /ready)."
)
"""The 503 detail of every route that answers from the vocabulary."""

_STRING: Final = {"schema": {"type": "string"}}

ERRORS: Final[Mapping[int, dict[str, Any]]] = {
    400: {"description": "The body is not JSON text (for example, not UTF-8)."},
    401: {
        "description": "A token is configured (VOCABSYNC_READ_TOKEN for reads, "
        "VOCABSYNC_REFRESH_TOKEN for the refresh) and the request has no "
        "`Authorization: Bearer <token>` with it.",
        "headers": {"WWW-Authenticate": {**_STRING, "description": "`Bearer`"}},
    },
    500: {"description": "The refresh failed; `detail` says whether PostgreSQL or Redis did."},
    503: {
        "description": "Nothing to answer from yet: no vocabulary could be loaded (PostgreSQL "
        "and Redis unreachable since startup), or the matching index is still being built "
        "(then `Retry-After` says when to try again). See /ready.",
        "headers": {"Retry-After": {**_STRING, "description": "Seconds to wait."}},
    },
}
"""Every error status the routes raise, with what it means; one entry per code."""


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer ``codes``, all with :class:`ErrorResponse`."""
    return {code: {"model": ErrorResponse, **ERRORS[code]} for code in codes}
