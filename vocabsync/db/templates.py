"""The SQL templates: ``vocabsync/db/sql/*.sql`` (package data) with ``{{name}}`` placeholders.

The trigger functions, the migration headers and the identity function live in those files, so
they read (and diff) as SQL. Rendering is plain substitution, in one pass: a substituted value is
never scanned again, so a channel or table name that contains ``{{x}}`` stays as it is. Every
placeholder must be given and every value used, so a renamed placeholder fails loudly instead of
leaving ``{{name}}`` in a migration. Quoting is the caller's job (:mod:`vocabsync.db.triggers`).
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Final

_PLACEHOLDER: Final = re.compile(r"\{\{([a-z_]+)\}\}")


@functools.cache
def load(name: str) -> str:
    """The text of ``sql/<name>``, exactly as stored."""
    return resources.files("vocabsync.db").joinpath("sql", name).read_text(encoding="utf-8")


def placeholders(name: str) -> frozenset[str]:
    """The placeholder names ``sql/<name>`` uses."""
    return frozenset(_PLACEHOLDER.findall(load(name)))


def render(template: str, /, **values: str) -> str:
    """``sql/<template>`` with each ``{{key}}`` replaced by ``values[key]``."""
    wanted = placeholders(template)
    missing = sorted(wanted - values.keys())
    unused = sorted(values.keys() - wanted)
    if missing or unused:
        raise ValueError(f"template {template}: missing {missing}, unused {unused}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], load(template))
