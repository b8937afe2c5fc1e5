"""Settings, from the environment and an optional ``.env`` file.

Accepts the design document's names (SUPABASE_HOST ... SUPABASE_PASSWORD, REDIS_HOST, REDIS_PORT)
and the usual DATABASE_URL / REDIS_URL; the URLs win when both are given. REDIS_SENTINELS with
REDIS_SENTINEL_MASTER win over both for the address of Redis (see :attr:`Settings.redis_sentinels`).
Everything specific to this tool is prefixed ``VOCABSYNC_``. Constructing settings does no I/O.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import quote, unquote, urlsplit

import psycopg
from dotenv import dotenv_values
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vocabsync.secrets import mask_url, redact
from vocabsync.sources import FieldSource, SourceMap, check_field_name

DEFAULT_DATABASE_URL = "postgresql://postgres@localhost:5432/postgres"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"

WRITABLE_SESSION_ATTRS = frozenset({"read-write", "primary"})
"""``target_session_attrs`` values that only accept the primary (``primary`` needs libpq 14+)."""


def postgres_hosts(conninfo: str) -> tuple[str, ...]:
    """The hosts a libpq URL or conninfo lists, in order (one entry per host, '' for a default).

    Several hosts (``postgresql://u@h1:5432,h2:5433/db``, ``host=h1,h2 port=5432,5433``) mean
    libpq tries them in turn. An unparsable string gives (); connecting reports it.
    """
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return ()
    hosts = str(params.get("host") or params.get("hostaddr") or "")
    return tuple(hosts.split(","))


def writable_conninfo(conninfo: str) -> str:
    """``conninfo`` made to reach only a writable primary when it lists several hosts.

    The bridge LISTENs and holds its leadership lock on the primary (a standby refuses
    ``LISTEN``, and its locks and notifications are not the primary's), so its session adds
    ``target_session_attrs=read-write`` when the string lists several hosts without it, or asks
    for another kind of server (``any``, ``standby``, ``prefer-standby``, ``read-only``: the
    same DATABASE_URL may rightly ask that for the instances' fallback reads). ``primary`` and
    ``read-write`` are kept; a single host without the parameter is left alone (a pooler in
    front of one host keeps working as before).
    """
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return conninfo  # unparsable: connecting reports it
    attrs = params.get("target_session_attrs")
    if attrs in WRITABLE_SESSION_ATTRS:
        return conninfo
    if attrs is None and len(postgres_hosts(conninfo)) < 2:
        return conninfo
    return make_conninfo(conninfo, target_session_attrs="read-write")


SentinelAddress = tuple[str, int]


SOURCES_VARIABLE = "VOCABSYNC_SOURCES"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """All configuration of the bridge, the API instances and the CLI."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
    )

    # --- PostgreSQL -------------------------------------------------------------------------
    database_url: SecretStr | None = Field(default=None, validation_alias=_env("DATABASE_URL"))
    supabase_host: str | None = Field(default=None, validation_alias=_env("SUPABASE_HOST"))
    supabase_port: int = Field(default=5432, validation_alias=_env("SUPABASE_PORT"))
    supabase_db: str = Field(default="postgres", validation_alias=_env("SUPABASE_DB"))
    supabase_user: str = Field(default="postgres", validation_alias=_env("SUPABASE_USER"))
    supabase_password: SecretStr | None = Field(
        default=None, validation_alias=_env("SUPABASE_PASSWORD")
    )
    supabase_sslmode: str | None = Field(default=None, validation_alias=_env("SUPABASE_SSLMODE"))

    # --- Redis ------------------------------------------------------------------------------
    redis_url: SecretStr | None = Field(default=None, validation_alias=_env("REDIS_URL"))
    redis_host: str | None = Field(default=None, validation_alias=_env("REDIS_HOST"))
    redis_port: int = Field(default=6379, validation_alias=_env("REDIS_PORT"))
    redis_password: SecretStr | None = Field(default=None, validation_alias=_env("REDIS_PASSWORD"))
    redis_sentinels: Annotated[tuple[SentinelAddress, ...] | None, NoDecode] = Field(
        default=None, validation_alias=_env("REDIS_SENTINELS")
    )
    """``host:port,host:port,...``: ask these Sentinels for the master instead of using
    REDIS_URL's address. The password, ACL user, database and TLS options still come from
    REDIS_URL (or REDIS_PASSWORD without one); only its host and port are not used."""
    redis_sentinel_master: str | None = Field(
        default=None, validation_alias=_env("REDIS_SENTINEL_MASTER")
    )
    """The name the Sentinels monitor the master under (``sentinel monitor <name> ...``)."""
    redis_sentinel_password: SecretStr | None = Field(
        default=None, validation_alias=_env("REDIS_SENTINEL_PASSWORD")
    )
    """Password of the Sentinels themselves (their ``requirepass``); none by default."""
    redis_sentinel_tls: bool = Field(default=False, validation_alias=_env("REDIS_SENTINEL_TLS"))
    """TLS to the Sentinels and the master (a ``rediss://`` REDIS_URL turns it on too)."""

    # --- Names ------------------------------------------------------------------------------
    key_prefix: str = Field(default="", validation_alias=_env("VOCABSYNC_KEY_PREFIX"))
    pg_channel: str = Field(
        default="vocabulary_changed", validation_alias=_env("VOCABSYNC_PG_CHANNEL")
    )
    trigger_mode: Literal["precise", "statement", "delta"] = Field(
        default="delta", validation_alias=_env("VOCABSYNC_TRIGGER_MODE")
    )
    sources: Annotated[SourceMap, NoDecode] = Field(
        default_factory=SourceMap.default, validation_alias=_env(SOURCES_VARIABLE)
    )

    # --- Timing -----------------------------------------------------------------------------
    vocabulary_ttl_seconds: int = Field(
        default=3600, gt=0, validation_alias=_env("VOCABSYNC_VOCABULARY_TTL_SECONDS")
    )
    snapshot_interval: float = Field(
        default=5.0, ge=0, validation_alias=_env("VOCABSYNC_SNAPSHOT_INTERVAL")
    )
    log_length: int = Field(default=10_000, ge=10, validation_alias=_env("VOCABSYNC_LOG_LENGTH"))
    network_timeout: float = Field(
        default=5.0, gt=0, validation_alias=_env("VOCABSYNC_NETWORK_TIMEOUT")
    )
    query_timeout: float = Field(
        default=30.0, gt=0, validation_alias=_env("VOCABSYNC_QUERY_TIMEOUT")
    )
    health_check_interval: float = Field(
        default=5.0, gt=0, validation_alias=_env("VOCABSYNC_HEALTH_CHECK_INTERVAL")
    )
    reconnect_initial_delay: float = Field(
        default=5.0, ge=0, validation_alias=_env("VOCABSYNC_RECONNECT_INITIAL_DELAY")
    )
    reconnect_max_delay: float = Field(
        default=300.0, ge=0, validation_alias=_env("VOCABSYNC_RECONNECT_MAX_DELAY")
    )
    reconnect_jitter: float = Field(
        default=0.1, ge=0, le=1, validation_alias=_env("VOCABSYNC_RECONNECT_JITTER")
    )
    resync_interval: float = Field(
        default=300.0, gt=0, validation_alias=_env("VOCABSYNC_RESYNC_INTERVAL")
    )
    leader_poll_interval: float = Field(
        default=2.0, gt=0, validation_alias=_env("VOCABSYNC_LEADER_POLL_INTERVAL")
    )
    fallback_max_age: float = Field(
        default=1.0, ge=0, validation_alias=_env("VOCABSYNC_FALLBACK_MAX_AGE")
    )

    # --- API security / identity -----------------------------------------------------------
    refresh_token: SecretStr | None = Field(
        default=None, validation_alias=_env("VOCABSYNC_REFRESH_TOKEN")
    )
    read_token: SecretStr | None = Field(
        default=None, validation_alias=_env("VOCABSYNC_READ_TOKEN")
    )
    instance_name: str | None = Field(
        default=None, validation_alias=_env("VOCABSYNC_INSTANCE_NAME")
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=_env("VOCABSYNC_LOG_LEVEL")
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _parse_sources(cls, value: Any) -> SourceMap:
        """Accept a JSON object ``{"projects": "Project.project_name", ...}``: it remaps some of
        the six fields (the others keep their defaults) and adds fields after them, in order."""
        return parse_sources(value)

    @field_validator("refresh_token", "read_token", mode="before")
    @classmethod
    def _empty_token_is_unset(cls, value: Any) -> Any:
        """``VOCABSYNC_REFRESH_TOKEN=`` must not turn into a token that an empty header matches."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _parse_sentinels(cls, value: Any) -> Any:
        """``"h1:26379,h2:26379"`` (IPv6 in brackets: ``[::1]:26379``); blank means unset."""
        if value is None or not isinstance(value, str):
            return value
        if not value.strip():
            return None
        return tuple(_sentinel_address(item) for item in value.split(","))

    @field_validator("redis_sentinel_master", mode="before")
    @classmethod
    def _blank_master_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @model_validator(mode="after")
    def _sentinels_need_a_master(self) -> Self:
        """Both REDIS_SENTINELS and REDIS_SENTINEL_MASTER, or neither: one alone is a mistake
        that would otherwise silently fall back to REDIS_URL."""
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_master):
            given, missing = (
                ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER")
                if self.redis_sentinels
                else ("REDIS_SENTINEL_MASTER", "REDIS_SENTINELS")
            )
            raise ValueError(
                f"{given} is set but {missing} is not: set both (the Sentinels' host:port list "
                "and the master's name from their `sentinel monitor <name> ...` line), or neither "
                "to use REDIS_URL"
            )
        return self

    @field_validator("pg_channel")
    @classmethod
    def _check_channel(cls, value: str) -> str:
        if not value or len(value.encode()) > 63:
            raise ValueError("the NOTIFY channel must be 1 to 63 bytes long")
        return value

    # --- Derived ----------------------------------------------------------------------------

    @property
    def database_configured(self) -> bool:
        """True when the user named a database (the demo starts its own otherwise)."""
        return self.database_url is not None or self.supabase_host is not None

    @property
    def redis_configured(self) -> bool:
        return self.uses_sentinel or self.redis_url is not None or self.redis_host is not None

    @property
    def uses_sentinel(self) -> bool:
        """True when the master is found through Redis Sentinel (REDIS_SENTINELS is set)."""
        return bool(self.redis_sentinels) and self.redis_sentinel_master is not None

    @property
    def redis_tls(self) -> bool:
        """TLS to Redis: a ``rediss://`` URL, or REDIS_SENTINEL_TLS with Sentinels."""
        tls = self.redis_connection_url.startswith("rediss://")
        return tls or (self.uses_sentinel and self.redis_sentinel_tls)

    @property
    def postgres_conninfo(self) -> str:
        """The libpq connection string (contains the password: never log it, use the masked one)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        if self.supabase_host is None:
            return DEFAULT_DATABASE_URL
        params: dict[str, Any] = {
            "host": self.supabase_host,
            "port": self.supabase_port,
            "dbname": self.supabase_db,
            "user": self.supabase_user,
        }
        if self.supabase_password is not None:
            params["password"] = self.supabase_password.get_secret_value()
        if self.supabase_sslmode:
            params["sslmode"] = self.supabase_sslmode
        return make_conninfo(**params)

    @property
    def postgres_hosts(self) -> tuple[str, ...]:
        """The hosts DATABASE_URL (or SUPABASE_HOST) lists, in the order libpq tries them."""
        return postgres_hosts(self.postgres_conninfo)

    @property
    def writable_postgres_conninfo(self) -> str:
        """The connection string of sessions that must be on the primary (the bridge, migrate,
        rollback, status): see :func:`writable_conninfo`. Contains the password."""
        return writable_conninfo(self.postgres_conninfo)

    @property
    def redis_connection_url(self) -> str:
        """The Redis URL (contains the password: never log it, use the masked one)."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        if self.redis_host is None:
            return DEFAULT_REDIS_URL
        auth = ""
        if self.redis_password is not None:
            auth = f":{quote(self.redis_password.get_secret_value(), safe='')}@"
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every secret this configuration holds, so error messages can be scrubbed of them."""
        found: list[str] = []
        for secret in (
            self.supabase_password,
            self.redis_password,
            self.redis_sentinel_password,
            self.refresh_token,
            self.read_token,
        ):
            if secret is not None:
                found.append(secret.get_secret_value())
        try:
            password = conninfo_to_dict(self.postgres_conninfo).get("password")
        except Exception:  # an unparsable DSN fails later with its own error
            password = None
        if isinstance(password, str):
            found.append(password)
        redis_password = urlsplit(self.redis_connection_url).password
        if redis_password:  # as written in the URL, and as sent (percent-decoded)
            found += [redis_password, unquote(redis_password)]
        return tuple(found)

    def redact(self, text: str) -> str:
        """Scrub this configuration's secrets (and any URL password) from a message."""
        return redact(text, self.secret_values)

    @property
    def postgres_display(self) -> str:
        return mask_url(self.redact(self.postgres_conninfo))

    @property
    def redis_display(self) -> str:
        """Where Redis is, for logs and errors: the URL, or the Sentinels and the master's name;
        never a password."""
        if self.uses_sentinel and self.redis_sentinels:
            hosts = ",".join(_format_address(address) for address in self.redis_sentinels)
            db = urlsplit(self.redis_connection_url).path.strip("/") or "0"
            tls = ", TLS" if self.redis_tls else ""
            master = self.redact(str(self.redis_sentinel_master))
            return f"sentinel://{hosts} master {master!r} (db {db}{tls})"
        return mask_url(self.redact(self.redis_connection_url))

    @property
    def redis_key(self) -> str:
        """The design document's key ``vocabulary``, behind the optional prefix."""
        return f"{self.key_prefix}vocabulary"

    @property
    def redis_channel(self) -> str:
        """The design document's channel ``vocabulary_updated``, behind the optional prefix."""
        return f"{self.key_prefix}vocabulary_updated"


def parse_sources(value: Any) -> SourceMap:
    """VOCABSYNC_SOURCES: a JSON object ``{"projects": "Project.project_name", ...}`` that remaps
    some of the six fields (the others keep their defaults) and adds fields after them, in order."""
    if isinstance(value, SourceMap):
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value, object_pairs_hook=_without_repeats)
        except json.JSONDecodeError as exc:
            raise ValueError(f"VOCABSYNC_SOURCES is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(
            'VOCABSYNC_SOURCES must be a JSON object like {"projects": "Project.project_name",'
            ' "suppliers": "Supplier.supplier_name"}'
        )
    merged = dict(SourceMap.default().sources)
    for name, spec in value.items():
        try:
            check_field_name(name)
            merged[name] = spec if isinstance(spec, FieldSource) else FieldSource.parse(str(spec))
        except ValueError as exc:
            raise ValueError(f"VOCABSYNC_SOURCES: {exc}") from None
    return SourceMap(merged)


def sources_from_environment(env_file: str = ".env") -> SourceMap:
    """VOCABSYNC_SOURCES alone, from the environment or ``env_file`` as :class:`Settings` reads it.

    For what must know the fields before the settings are read: an API router's schema lists
    them, and an app includes the router when it is built, often at import, when reading the
    whole settings (and failing on an unrelated one) is not wanted.
    """
    for name, value in os.environ.items():
        if name.upper() == SOURCES_VARIABLE:
            return parse_sources(value)
    if Path(env_file).is_file():
        for name, found in dotenv_values(env_file).items():
            if name.upper() == SOURCES_VARIABLE and found is not None:
                return parse_sources(found)
    return SourceMap.default()


def _without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members; a name given twice is an error (JSON would keep the last)."""
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"VOCABSYNC_SOURCES names the field(s) {repeated} more than once")
    return dict(pairs)


def _sentinel_address(item: str) -> SentinelAddress:
    """``host:port`` → (host, port), with a message that says what is wrong."""
    text = item.strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1]:26379
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"REDIS_SENTINELS must be a comma-separated list of host:port pairs, e.g. "
            f"'sentinel-1:26379,sentinel-2:26379,sentinel-3:26379'; {text!r} is not host:port"
        )
    return host, int(port_text)


def _format_address(address: SentinelAddress) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def get_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (and ``.env``), with explicit overrides on top."""
    return Settings(**overrides)
