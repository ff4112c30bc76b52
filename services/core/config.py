"""Settings from the environment (prefix ``CALLVAULT_``). Read through ``get_settings()``, never at import."""

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("callvault-data")


class Settings(BaseSettings):
    # No inf or nan: an infinite timeout or interval would switch a guard off or crash its thread.
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_", extra="ignore", allow_inf_nan=False)

    backend: Literal["local", "aws"] = Field("local", description="local: files + SQLite; aws: S3 + DynamoDB")
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="local back end: archive, index and secrets")

    # One or more secrets, comma-separated: during a rotation both the old and the new one verify.
    webhook_secret: SecretStr | None = None
    # AWS: the SSM SecureString parameter holding the webhook secret(s), read once at cold start.
    webhook_secret_param: str | None = None

    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0, description="larger webhook bodies get 413")
    # `callvault serve` only (services/local/server.py): bounded work per request.
    max_bodies_in_flight: int = Field(8, ge=1, description="webhook bodies taken at once; more get 503 + Retry-After")
    ingest_processes: int = Field(
        2, ge=0, le=16, description="`callvault serve`: processes that store webhooks (0: a thread of the server)"
    )
    header_timeout_secs: float = Field(10.0, gt=0, le=3600, description="a request's headers must arrive within this")
    body_timeout_secs: float = Field(
        30.0, gt=0, le=3600, description="a request body gets this long, plus 1 s per 128 KiB received (1 Mbit/s)"
    )
    send_timeout_secs: float = Field(
        60.0, gt=0, le=3600, description="a response the client takes nothing of for this long is cut off"
    )
    default_region: str = Field("US", description="region for phone numbers written without a country code")

    bucket: str | None = Field(None, description="aws: the archive bucket")
    table: str = Field("callvault-calls", description="aws: the DynamoDB call index table")
    analytics_bucket: str | None = Field(None, description="aws: the analytics tables' bucket (not the archive)")
    athena_workgroup: str = Field("callvault-analytics", description="`callvault report --athena`: workgroup")
    athena_database: str = Field("callvault_analytics", description="`callvault report --athena`: Glue database")
    search_analytics: Literal["none", "athena"] = Field(
        "none", description="aws: the engine behind GET /search and the console's search and dashboard"
    )
    analytics_compact_interval: float = Field(
        3600.0, gt=0, le=604800, description="`callvault serve`: seconds between merges of closed analytics days"
    )
    # Retention (#13, docs/privacy.md). aws: an SSM parameter (String) holding the rules, the TOML of
    # `<data-dir>/retention.toml`; read by the scheduled function and by `callvault retention run`.
    retention_rules_param: str | None = Field(None, description="aws: SSM parameter holding the retention rules")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("data_dir", mode="before")
    @classmethod
    def _blank_data_dir_is_the_default(cls, value: object) -> object:
        # `export CALLVAULT_DATA_DIR=` means unset: as Path("") it was the current folder, which `serve`
        # fills with data files and makes owner-only, every file under it included.
        return DEFAULT_DATA_DIR if isinstance(value, str) and not value.strip() else value

    @field_validator("public_url", "memory_llm_base_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value  # `export X=` unsets

    @field_validator("public_url", "mem0_host", "elevenlabs_base_url", "memory_llm_base_url")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        # "calls.example.org" alone would make every file link relative to the page that shows it.
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"expected an absolute http:// or https:// URL (e.g. https://calls.example.org), not {value!r}"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value  # "info" is what people type

    # Search API. Keys: comma-separated, each a raw key or ``sha256:<hex>`` of one; only hashes are kept.
    api_keys: SecretStr | None = None
    # AWS: SSM SecureString parameter with the keys, read once at cold start. A Secrets Manager secret
    # works too through SSM's reference path: ``/aws/reference/secretsmanager/<secret-name>``.
    api_keys_param: str | None = None
    # HMAC key for pagination cursors and local file links. Must be the same on every instance (a
    # cursor issued by one Lambda instance is redeemed by another); generated into the data dir locally.
    signing_key: SecretStr | None = None
    signing_key_param: str | None = None
    # Erasure (#13, docs/privacy.md): the HMAC key of the tombstones and audit entries that name
    # erased conversations. Generated into the data dir locally; on AWS an SSM SecureString.
    tombstone_key: SecretStr | None = None
    tombstone_key_param: str | None = None
    # AWS: the DynamoDB table of the audit trail and the legal holds (docs/privacy.md); unset, neither is kept.
    audit_table: str | None = Field(None, description="aws: the audit trail and legal holds table")
    # key: every data route checks `Authorization: Bearer <key>`. iam: API Gateway authorises callers with
    # IAM (SigV4 uses the Authorization header itself); the app then only insists that the event shows
    # an IAM-authenticated caller, so a deployment that lost its authorizer fails closed.
    api_auth: Literal["key", "iam"] = Field("key", description="search API authentication: key or iam")
    link_ttl_secs: int = Field(
        900, ge=1, le=604800, description="lifetime of transcript/audio links (SigV4 allows at most 7 days)"
    )
    public_url: str | None = Field(
        None, description="local: base URL put in file links (default: the address the request came in on)"
    )
    api_base_path: str = Field(
        "/", description="aws: path prefix API Gateway adds before routes (a named stage or a custom-domain mapping)"
    )

    # Caller memory (services/memory, docs/memory.md). oss: Mem0 open source, offline, under data_dir;
    # platform: the hosted Mem0 Platform (the only choice on AWS); none: no memories at all.
    memory_backend: Literal["oss", "platform", "none"] = Field("oss", description="where caller memories live")
    mem0_api_key: SecretStr | None = None
    # AWS: SSM SecureString parameter with the Mem0 Platform API key, read once at cold start.
    mem0_api_key_param: str | None = None
    mem0_host: str = Field("https://api.mem0.ai", description="Mem0 Platform base URL")
    mem0_timeout_secs: float = Field(10.0, gt=0, le=600, description="per-request timeout towards Mem0 Platform")
    mem0_max_retries: int = Field(3, ge=0, le=10, description="retries of one Mem0 Platform request (5xx, 429)")
    memory_queue_url: str | None = Field(None, description="aws: the SQS FIFO queue of memory jobs")
    memory_infer: bool = Field(
        False, description="let Mem0 extract the caller's memories from the transcript with an LLM (infer=True)"
    )
    # oss + memory_infer: the OpenAI-compatible server Mem0 extracts with (Ollama, vLLM, LM Studio, OpenAI)
    memory_llm_base_url: str | None = Field(None, description="oss inference: e.g. http://127.0.0.1:11434/v1")
    memory_llm_model: str = Field("gpt-4o-mini", description="oss inference: the model name the server knows")
    memory_llm_api_key: SecretStr | None = None
    # Shared secret(s) ElevenLabs sends in X-CallVault-Secret to the conversation-initiation webhook and
    # the memory-search tool; comma-separated during a rotation. Generated into data_dir locally.
    agent_webhook_secret: SecretStr | None = None
    agent_webhook_secret_param: str | None = None
    agent_first_message: str | None = Field(
        None,
        description="first-message override for returning callers whose name is known, e.g. "
        "'Welcome back, {caller_name}!' (enable the override in the agent's Security tab)",
    )
    memory_worker_poll_secs: float = Field(1.0, gt=0, le=3600, description="local worker: idle poll interval")
    memory_worker_lease_secs: float = Field(300.0, gt=0, le=86400, description="local worker: a claimed job's lease")
    memory_max_attempts: int = Field(8, ge=1, le=100, description="attempts before a memory job is failed")
    memory_retry_base_secs: float = Field(5.0, gt=0, le=86400, description="first retry delay; doubles per attempt")
    memory_retry_max_secs: float = Field(3600.0, gt=0, le=604800, description="longest retry delay")
    memory_embed_threads: int = Field(1, ge=1, le=16, description="oss: onnxruntime threads for embeddings")
    memory_worker_yield_max_secs: float = Field(
        10.0, ge=0, le=3600, description="local worker: longest wait for a gap between webhooks before the next job"
    )

    # ElevenLabs Conversations API (services/sync, docs/sync.md): missed calls and audio the webhooks
    # did not bring. The key keeps the SDK's own variable name; on AWS it comes from SSM.
    elevenlabs_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ELEVENLABS_API_KEY", "CALLVAULT_ELEVENLABS_API_KEY")
    )
    elevenlabs_api_key_param: str | None = None
    elevenlabs_base_url: str = Field("https://api.elevenlabs.io", description="ElevenLabs API base URL")
    elevenlabs_timeout_secs: float = Field(30.0, gt=0, le=600, description="per-request timeout towards ElevenLabs")
    elevenlabs_max_attempts: int = Field(6, ge=1, le=20, description="attempts of one ElevenLabs request")
    audio_grace_seconds: int = Field(
        300, ge=0, le=900, description="wait this long for the audio webhook before fetching the audio from the API"
    )
    sync_interval: float | None = Field(
        None,
        ge=0,
        le=604800,
        description="`callvault serve`: seconds between syncs (default 900 with an API key; 0: off)",
    )
    sync_overlap_seconds: int = Field(
        3600, ge=0, description="a sync without --since lists this far before the last watermark (late calls)"
    )
    audio_fetch_queue_url: str | None = Field(None, description="aws: the SQS queue of delayed audio fetches")

    def effective_sync_interval(self) -> float:
        """0 when no sync should run; the default interval applies only when an API key is set."""
        if self.sync_interval is not None:
            return self.sync_interval
        return 900.0 if self.elevenlabs_api_key is not None else 0.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
