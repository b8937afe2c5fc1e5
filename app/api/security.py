"""Bearer-token checks for the endpoints an operator may want to protect.

``POST /api/vocabulary/refresh`` requires ``VOCABSYNC_REFRESH_TOKEN`` when it is set; reads
require ``VOCABSYNC_READ_TOKEN`` when that is set. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException
from pydantic import SecretStr

from app.api.deps import CacheDep


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


def _dependency(kind: str) -> Callable[..., None]:
    def verify(cache: CacheDep, authorization: Annotated[str | None, Header()] = None) -> None:
        settings = cache.settings
        if kind == "refresh":
            _check(settings.refresh_token, authorization, "refreshing the vocabulary")
        else:
            _check(settings.read_token, authorization, "reading the vocabulary")

    return verify


RequireRefreshToken = Depends(_dependency("refresh"))
RequireReadToken = Depends(_dependency("read"))
