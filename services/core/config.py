"""Settings from the environment (prefix ``CALLVAULT_``). Read through ``get_settings()``, never at import."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_", extra="ignore")

    backend: Literal["local", "aws"] = Field("local", description="local: files + SQLite; aws: S3 + DynamoDB")
    data_dir: Path = Field(Path("callvault-data"), description="local back end: archive, index and secrets")

    # One or more secrets, comma-separated: during a rotation both the old and the new one verify.
    webhook_secret: SecretStr | None = None
    # AWS: the SSM SecureString parameter holding the webhook secret(s), read once at cold start.
    webhook_secret_param: str | None = None

    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0, description="larger webhook bodies get 413")
    default_region: str = Field("US", description="region for phone numbers written without a country code")

    bucket: str | None = Field(None, description="aws: the archive bucket")
    table: str = Field("callvault-calls", description="aws: the DynamoDB call index table")

    log_level: str = "INFO"

    def webhook_secrets(self) -> list[str]:
        if self.webhook_secret is None:
            return []
        return [s.strip() for s in self.webhook_secret.get_secret_value().split(",") if s.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
