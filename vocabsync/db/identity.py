"""Comparing database identities: is one an older history of the other?

``public.vocabsync_database_identity()`` returns ``system identifier/timeline/database/function/
generation``. Two different identities never order by version: the state read from the new one
replaces the old. One case is an exception. The same cluster, database and generation on an
*earlier* timeline is the history that a promotion (or point-in-time recovery) left behind: an
old primary that came back writable after a failover (split brain), or a standby still following
it. Its vocabulary must not replace the promoted server's, however high its versions are.
"""

from __future__ import annotations

from typing import Final

from vocabsync.errors import DatabaseUnavailableError

PARTS: Final = 5
TIMELINE: Final = 1


def _split(identity: str) -> tuple[tuple[str, ...], int] | None:
    """(the parts other than the timeline, the timeline), or None when there is no timeline."""
    parts = identity.split("/", PARTS - 1)
    if len(parts) != PARTS or not parts[TIMELINE].isdigit() or not parts[0]:
        return None
    rest = tuple(part for index, part in enumerate(parts) if index != TIMELINE)
    return rest, int(parts[TIMELINE])


def timeline_of(identity: str) -> int | None:
    """The timeline an identity was read on (None when the role could not read it)."""
    found = _split(identity)
    return None if found is None else found[1]


def is_older_history(candidate: str, current: str) -> bool:
    """True when ``candidate`` is ``current``'s cluster, database and generation on an earlier
    timeline: a history that a promotion left behind. False whenever it cannot tell (parts
    missing because a provider revoked them, another cluster or database, a re-created
    identity function): those replace the state as any other new history does."""
    old, new = _split(candidate), _split(current)
    return old is not None and new is not None and old[0] == new[0] and old[1] < new[1]


class OlderHistoryError(DatabaseUnavailableError):
    """The database reached is on an earlier timeline than the vocabulary already held."""


def older_history_error(
    candidate: str, current: str, where: str, head_key: str
) -> OlderHistoryError:
    """What to tell the operator when ``where`` serves an older history than the shared state."""
    return OlderHistoryError(
        f"PostgreSQL at {where} is on timeline {timeline_of(candidate)}, an older history of the "
        f"database whose vocabulary Redis holds from timeline {timeline_of(current)}: an old "
        "primary that came back after a failover (or a standby still following it). Not using "
        "its vocabulary. Fence that server or fix DATABASE_URL; if this database really is the "
        f"one to follow (restored from an older copy), delete the Redis key {head_key} and the "
        "next resync replaces the state"
    )
