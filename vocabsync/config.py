"""Settings, from the environment and an optional ``.env`` file.

Accepts the design document's names (SUPABASE_HOST ... SUPABASE_PASSWORD, REDIS_HOST, REDIS_PORT)
and the usual DATABASE_URL / REDIS_URL; the URLs win when both are given. Everything specific to
this tool is prefixed ``VOCABSYNC_``. Constructing settings does no I/O.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vocabsync.secrets import mask_url, redact
from vocabsync.sources import FieldSource, SourceMap

DEFAULT_DATABASE_URL = "postgresql://postgres@localhost:5432/postgres"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"


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

    # --- Names ------------------------------------------------------------------------------
    key_prefix: str = Field(default="", validation_alias=_env("VOCABSYNC_KEY_PREFIX"))
    pg_channel: str = Field(
        default="vocabulary_changed", validation_alias=_env("VOCABSYNC_PG_CHANNEL")
    )
    trigger_mode: Literal["precise", "statement", "delta"] = Field(
        default="delta", validation_alias=_env("VOCABSYNC_TRIGGER_MODE")
    )
    sources: Annotated[SourceMap, NoDecode] = Field(
        default_factory=SourceMap.default, validation_alias=_env("VOCABSYNC_SOURCES")
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
        """Accept a JSON object ``{"projects": "Project.project_name", ...}`` (partial is fine)."""
        if isinstance(value, SourceMap):
            return value
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"VOCABSYNC_SOURCES is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ValueError('expected a JSON object like {"projects": "Project.project_name"}')
        merged = dict(SourceMap.default().sources)
        for name, spec in value.items():
            merged[name] = spec if isinstance(spec, FieldSource) else FieldSource.parse(str(spec))
        return SourceMap(merged)

    @field_validator("refresh_token", "read_token", mode="before")
    @classmethod
    def _empty_token_is_unset(cls, value: Any) -> Any:
        """``VOCABSYNC_REFRESH_TOKEN=`` must not turn into a token that an empty header matches."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

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
        return self.redis_url is not None or self.redis_host is not None

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
        return tuple(found)

    def redact(self, text: str) -> str:
        """Scrub this configuration's secrets (and any URL password) from a message."""
        return redact(text, self.secret_values)

    @property
    def postgres_display(self) -> str:
        return mask_url(self.redact(self.postgres_conninfo))

    @property
    def redis_display(self) -> str:
        return mask_url(self.redact(self.redis_connection_url))

    @property
    def redis_key(self) -> str:
        """The design document's key ``vocabulary``, behind the optional prefix."""
        return f"{self.key_prefix}vocabulary"

    @property
    def redis_channel(self) -> str:
        """The design document's channel ``vocabulary_updated``, behind the optional prefix."""
        return f"{self.key_prefix}vocabulary_updated"


def get_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (and ``.env``), with explicit overrides on top."""
    return Settings(**overrides)
