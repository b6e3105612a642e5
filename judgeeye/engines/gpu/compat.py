"""Which transformers releases the static decoder runs on.

The decoder drives transformers' model code and ``StaticCache`` from its own loop, so it leans
on parts of transformers that are not a stable API: the attention registry
(``AttentionInterface``, ``AttentionMaskInterface``, ``config._attn_implementation``), the
per-layer tensors of ``StaticCache`` (``layers[i].keys/values``, a tensor
``cumulative_length``, ``lazy_initialization``) and ``DynamicCache(config=...)``. A release that
changes them breaks the decoder in ways no exception may show (wrong cache positions give wrong
tokens). So it runs only on the releases in :data:`SUPPORTED_TRANSFORMERS`, where its tests
passed; on any other release the engine says why in its log and samples with ``generate``.

To support a new release: run ``tests/test_transformers_engine.py`` (the static decoder must
give the same greedy tokens as ``generate``) and, on a GPU, ``bench/gpu_throughput.py``, then
widen the range.
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import Version

#: transformers releases the static decoder is tested with (5.17: the GPU benchmark's figures;
#: 5.25: this repository's CPU tests)
SUPPORTED_TRANSFORMERS = SpecifierSet(">=5.17,<5.26")


def transformers_refusal(version: str | None = None) -> str | None:
    """None when the static decoder supports this transformers release (default: the installed
    one) and its internals look as expected, else the reason it does not run."""
    if version is None:
        import transformers

        version = transformers.__version__
    if Version(version) not in SUPPORTED_TRANSFORMERS:
        tested = ", ".join(sorted((str(s) for s in SUPPORTED_TRANSFORMERS), reverse=True))
        return (f"the static decoder is tested with transformers {tested}, not {version}; "
                "sampling with transformers' generate instead")
    return _missing_internals()


def _missing_internals() -> str | None:
    """The internals the decoder uses, checked without building a model."""
    try:
        from transformers import AttentionInterface, DynamicCache, StaticCache  # noqa: F401
        from transformers.cache_utils import StaticLayer
        from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: F401
    except ImportError as exc:
        return f"transformers lacks what the static decoder needs ({exc}); using generate"
    layer = StaticLayer(max_cache_len=1)
    if not hasattr(getattr(layer, "cumulative_length", None), "fill_") \
            or not hasattr(layer, "lazy_initialization"):
        return ("transformers' StaticCache layers have no tensor position counter here; the "
                "static decoder needs one; using generate")
    return None


__all__ = ["SUPPORTED_TRANSFORMERS", "transformers_refusal"]
