"""The bundled MiniLM's three builds for critique embeddings: PyTorch, ONNX int8 and static
(model2vec), each real, each finding three unrelated topics; the built ones made once and cached
under the model cache, never in the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from judgeeye.engines.model_loader import model_cache_root
from judgeeye.refine import embed
from judgeeye.refine.cluster import cluster_level
from judgeeye.refine.embed import EMBEDDED, EMBEDDED_ONNX, EMBEDDED_STATIC, build_dir, embed_texts, ensure_built

REPO = Path(__file__).resolve().parents[1]
TOPICS = {
    "spelling": ["There are many spelling mistakes.", "The text is full of typos.",
                 "Grammar errors appear in every sentence.", "Punctuation is used incorrectly throughout.",
                 "Words are misspelled again and again."],
    "space": ["The story takes place on a spaceship.", "Astronauts travel between distant planets.",
              "A rocket launches toward Mars.", "The crew explores an alien galaxy.",
              "Stars and planets fill the sky of the space station."],
    "food": ["The characters cook a big dinner.", "A recipe for apple pie is described.",
             "The family eats soup and bread.", "The chef prepares a delicious meal.",
             "They bake cookies in the kitchen."],
}
TEXTS = [t for group in TOPICS.values() for t in group]


def _finds_the_topics(x: np.ndarray) -> None:
    truth = np.repeat(np.arange(3), 5)
    result = cluster_level(x, k_max=6, seed=0)
    assert result.k == 3 and all(len(set(truth[c.members])) == 1 for c in result.clusters)


@pytest.mark.slow
def test_onnx_int8_build_is_cached_and_agrees_with_pytorch() -> None:
    folder = ensure_built(EMBEDDED_ONNX)
    assert folder == build_dir(EMBEDDED_ONNX) and folder.is_relative_to(model_cache_root())
    assert not folder.is_relative_to(REPO) and (folder / "model_qint8.onnx").is_file()
    marker = folder / ".judgeeye-complete"
    made = marker.stat().st_mtime_ns
    assert ensure_built(EMBEDDED_ONNX) == folder and marker.stat().st_mtime_ns == made  # built once
    onnx, torch = embed_texts(TEXTS, EMBEDDED_ONNX), embed_texts(TEXTS, EMBEDDED)
    assert onnx.shape == torch.shape == (15, 384) and np.allclose(np.linalg.norm(onnx, axis=1), 1, atol=1e-5)
    assert (onnx * torch).sum(axis=1).min() > 0.97  # int8 weights, the same model
    _finds_the_topics(onnx)


@pytest.mark.slow
def test_static_embeddings_distilled_from_the_bundled_model_find_the_topics() -> None:
    folder = ensure_built(EMBEDDED_STATIC)
    assert folder.is_relative_to(model_cache_root()) and (folder / "model.safetensors").is_file()
    x = embed_texts(TEXTS, EMBEDDED_STATIC)
    assert x.shape == (15, 256) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    _finds_the_topics(x)
    assert embed_texts(["zzzz qqqq"], EMBEDDED_STATIC).shape == (1, 256)  # unknown words: still a vector


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGEEYE_MODEL_CACHE", str(tmp_path))

    def broken(source: Path, out: Path) -> None:
        out.mkdir()
        (out / "half.onnx").write_bytes(b"x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(embed, "_export_onnx", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_built(EMBEDDED_ONNX)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    with pytest.raises(embed.EmbeddingError, match="cannot load the embedding model 'no/such-model'"):
        embed_texts(["x"], "no/such-model")
