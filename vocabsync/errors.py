"""The errors this tool raises on purpose; each message says what to do about it."""

from __future__ import annotations


class VocabSyncError(Exception):
    """Base class of the errors this tool raises on purpose."""


class ConfigurationError(VocabSyncError):
    """The configuration is invalid or points at something that does not exist."""


class DatabaseUnavailableError(VocabSyncError):
    """PostgreSQL could not be reached or answered with an error."""


class RedisUnavailableError(VocabSyncError):
    """Redis could not be reached or answered with an error."""


class RefreshError(VocabSyncError):
    """A vocabulary refresh failed; the previous snapshot stays in use."""
