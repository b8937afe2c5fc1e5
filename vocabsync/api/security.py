"""Bearer-token checks for the endpoints an operator may want to protect.

``POST /api/vocabulary/refresh`` requires ``VOCABSYNC_REFRESH_TOKEN`` when it is set; every
read of the vocabulary (``GET /api/vocabulary``, ``POST /api/vocabulary/match``) requires
``VOCABSYNC_READ_TOKEN`` when that is set. The probes and metrics stay open. Tokens are compared
in constant time, and checked before any other work (a read-through, a match).

The header is declared as an optional parameter rather than an OpenAPI security scheme: whether
a token is needed depends on the deployment's settings, and a scheme would tell clients (and
fuzzers) that every call must authenticate.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException
from pydantic import SecretStr

from vocabsync.api.deps import CacheDep

AuthorizationHeader = Annotated[
    str | None,
    Header(description="`Bearer <token>`, when VOCABSYNC_REFRESH_TOKEN/READ_TOKEN is set."),
]


def _check(expected: SecretStr | None, authorization: str | None, what: str) -> None:
    if expected is None:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            status_code=401,
            detail=f"{what} requires 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_refresh_token(cache: CacheDep, authorization: AuthorizationHeader = None) -> None:
    _check(cache.settings.refresh_token, authorization, "refreshing the vocabulary")


def require_read_token(cache: CacheDep, authorization: AuthorizationHeader = None) -> None:
    _check(cache.settings.read_token, authorization, "reading the vocabulary")


RequireRefreshToken = Depends(require_refresh_token)
RequireReadToken = Depends(require_read_token)
