"""The only place that chooses the memory back end, queue and secrets (``core.wiring`` does storage).

Imports of ``mem0``, ``onnxruntime`` and ``boto3`` happen inside the functions, so importing this
module costs nothing and the ingest Lambda can build its queue without loading Mem0.
"""

from pathlib import Path

from services.core.config import Settings

from .ports import MemoryJobQueue, MemoryStore

AGENT_SECRET_FILE = "agent-secret"  # noqa: S105 - a file name, not a secret
INDEX_FILE = "index.sqlite3"  # the call index's file (core.wiring); the outbox table lives in it too
MEMORY_DIR = "memory"


def memory_enabled(settings: Settings) -> bool:
    return settings.memory_backend != "none"


def memory_infer(settings: Settings) -> bool:
    """Whether jobs send the transcript to the back end's LLM (``CALLVAULT_MEMORY_INFER``)."""
    if not settings.memory_infer or settings.memory_backend == "none":
        return False
    if settings.memory_backend == "oss" and not settings.memory_llm_base_url:
        raise RuntimeError(
            "CALLVAULT_MEMORY_INFER with memory_backend=oss needs CALLVAULT_MEMORY_LLM_BASE_URL "
            "(an OpenAI-compatible server: Ollama, vLLM, LM Studio, OpenAI)"
        )
    return True


def build_memory_store(settings: Settings) -> MemoryStore:
    """The configured store. Open source needs the local disk, so AWS must use the Platform (or none)."""
    if settings.memory_backend == "none":
        from .stores import NullMemoryStore

        return NullMemoryStore()
    if settings.memory_backend == "platform":
        from .mem0_platform import Mem0PlatformMemoryStore

        home = settings.data_dir / MEMORY_DIR / "mem0-home" if settings.backend == "local" else None
        return Mem0PlatformMemoryStore(
            mem0_api_key(settings),
            settings.mem0_host,
            timeout_secs=settings.mem0_timeout_secs,
            max_retries=settings.mem0_max_retries,
            mem0_home=home,  # None: a temp dir (Lambda's home is read-only)
        )
    if settings.backend == "aws":
        raise RuntimeError(
            "CALLVAULT_MEMORY_BACKEND=oss keeps memories on local disk, which Lambda does not have: "
            "use platform (Mem0 Platform) or none on AWS"
        )
    from .embedder import OnnxMiniLmEmbedder
    from .mem0_oss import LlmEndpoint, Mem0OssMemoryStore

    llm = None
    if memory_infer(settings) and settings.memory_llm_base_url:
        key = settings.memory_llm_api_key.get_secret_value() if settings.memory_llm_api_key else ""
        llm = LlmEndpoint(settings.memory_llm_base_url, settings.memory_llm_model, key or "unused")
    return Mem0OssMemoryStore(
        settings.data_dir / MEMORY_DIR, embedder=OnnxMiniLmEmbedder(threads=settings.memory_embed_threads), llm=llm
    )


def build_memory_queue(settings: Settings) -> MemoryJobQueue | None:
    """Where ingest records jobs: the outbox table locally, SQS on AWS; None when memory is off."""
    if not memory_enabled(settings):
        return None
    if settings.backend == "aws":
        if not settings.memory_queue_url:
            return None
        from .sqs_queue import SqsMemoryQueue

        return SqsMemoryQueue(settings.memory_queue_url)
    from .outbox import SqliteOutbox

    return SqliteOutbox(settings.data_dir / INDEX_FILE)


def mem0_api_key(settings: Settings) -> str:
    if settings.mem0_api_key is not None and settings.mem0_api_key.get_secret_value():
        return settings.mem0_api_key.get_secret_value()
    if settings.mem0_api_key_param:
        from services.core.secrets import read_ssm_secret

        return read_ssm_secret(settings.mem0_api_key_param).strip()
    raise RuntimeError("memory_backend=platform needs CALLVAULT_MEM0_API_KEY or CALLVAULT_MEM0_API_KEY_PARAM")


def agent_secrets(settings: Settings) -> list[str]:
    """Secrets for X-CallVault-Secret: the environment, else (AWS) SSM. Empty refuses every request."""
    from services.core.secrets import secret_list

    return secret_list(settings.agent_webhook_secret, settings.agent_webhook_secret_param)


def local_agent_secret(data_dir: Path) -> tuple[str, bool]:
    """The local server's agent secret, generated on first run and kept (0600) in the data dir."""
    from services.core.secrets import local_secret

    return local_secret(data_dir, AGENT_SECRET_FILE, "asec_")
