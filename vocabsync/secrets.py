"""Keep passwords out of logs and error messages.

Connection strings are shown to operators all the time (startup logs, errors, /ready, status
output); every such place goes through :func:`mask_url` or :func:`redact`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)@")
_CONNINFO_PASSWORD = re.compile(
    r"(?P<head>(?<![?&])\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)"
)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&\s]+)")


def mask_url(text: str) -> str:
    """Replace the password in URLs (``scheme://user:pw@``) and conninfo strings with ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _CONNINFO_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Mask URL passwords and every known secret value wherever it appears in ``text``."""
    text = mask_url(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text
