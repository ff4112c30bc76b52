"""The ONNX MiniLM embedder: the vectors Mem0 stores, the pinned files, and no torch anywhere."""

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.memory.embedder import DIMENSIONS, EmbedderUnavailable, OnnxMiniLmEmbedder, default_tokenizer_path

ROOT = Path(__file__).resolve().parents[2]


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_384_dims_unit_length_and_closer_for_related_texts(embedder: OnnxMiniLmEmbedder) -> None:
    trip = embedder.embed("I went to Lisbon for a holiday last spring")
    travel = embedder.embed("a vacation in Portugal")
    knee = embedder.embed("my knee surgery is on Tuesday")
    assert len(trip) == DIMENSIONS
    assert math.isclose(math.sqrt(sum(x * x for x in trip)), 1.0, rel_tol=1e-4)
    assert _cosine(trip, travel) > _cosine(trip, knee) + 0.2


def test_embed_batch_equals_embed_one_by_one(embedder: OnnxMiniLmEmbedder) -> None:
    texts = ["short", "a much longer sentence that pads differently from the short one"]
    batch = embedder.embed_batch(texts)
    assert batch == [embedder.embed(t) for t in texts]


def test_a_long_text_is_truncated_not_refused(embedder: OnnxMiniLmEmbedder) -> None:
    assert len(embedder.embed("word " * 5000)) == DIMENSIONS


def test_a_tokenizer_that_is_not_the_pinned_one_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "tokenizer.json"
    fake.write_bytes(default_tokenizer_path().read_bytes() + b" ")
    monkeypatch.setattr("services.memory.embedder.default_tokenizer_path", lambda: fake)
    with pytest.raises(EmbedderUnavailable, match="not the pinned one"):
        OnnxMiniLmEmbedder()


def test_the_offline_store_runs_without_torch_or_sentence_transformers(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from services.memory.mem0_oss import Mem0OssMemoryStore\n"
        "from services.memory.domain import MemoryItem\n"
        f"store = Mem0OssMemoryStore(Path({str(tmp_path)!r}))\n"
        "store.add_conversation('+16125550142', 'c1', [MemoryItem('hello there', 'user', 'semantic', "
        "{'type': 'semantic', 'conversation_id': 'c1'})])\n"
        "assert store.search('+16125550142', 'hello', None, 1)\n"
        "heavy = {'torch', 'sentence_transformers', 'fastembed', 'spacy'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith(("MEM0_", "CALLVAULT_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
