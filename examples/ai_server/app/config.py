"""The AI server's own settings, from ``AI_*`` environment variables or ``.env``.

vocabsync reads its settings (``DATABASE_URL``, ``REDIS_URL`` or the design document's
``SUPABASE_*``/``REDIS_*`` names) from the same environment and ``.env`` file, when it starts.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AI_", env_file=".env", extra="ignore")

    title: str = Field(default="AI server", description="Shown in the OpenAPI page.")
    min_score: float = Field(
        default=0.0, ge=0, le=1, description="Leave out guessed entities scoring below this."
    )
    max_entities: int = Field(default=20, ge=1, le=1000, description="Entities per answer.")


@lru_cache
def get_settings() -> Settings:
    """Read once, on first use (not at import)."""
    return Settings()
