"""The transformers engine's fast decoder: a static-cache decode loop (``decoder``) with its
sampling (``sampling``), decode attention (``attention``, Triton kernels in ``triton_decode``)
and fused projections (``fusion``).

Built for GPUs (compiled steps, CUDA graphs); on the CPU the same loop runs eagerly, where its
preallocated cache and once-per-prompt prefill beat ``generate``. It relies on transformers
internals, so it runs only on the releases in :data:`SUPPORTED_TRANSFORMERS`
(:mod:`.compat`); elsewhere :func:`build_static_decoder` says why and the engine uses
``generate``. Importing this package needs neither torch nor Triton.
"""

from __future__ import annotations

import logging
from typing import Any

from judgeeye.engines.base import EngineError
from judgeeye.engines.gpu.compat import SUPPORTED_TRANSFORMERS, transformers_refusal
from judgeeye.engines.gpu.decoder import StaticDecoder, check_static_support

log = logging.getLogger(__name__)


def build_static_decoder(model: Any, **options: Any) -> tuple[StaticDecoder | None, str | None]:
    """``(decoder, None)``, or ``(None, why not)`` where this transformers release or this model
    is not supported (``options``: :class:`StaticDecoder`'s keyword arguments). An unsupported
    release is logged as a warning, a model the decoder does not handle (sliding windows, an
    unmerged adapter) as information: that one is expected."""
    refusal = transformers_refusal()
    if refusal is not None:
        log.warning("static decoder refused: %s", refusal)
        return None, refusal
    try:
        return StaticDecoder(model, **options), None
    except EngineError as exc:
        log.info("static decoder off for this model: %s", exc)
        return None, str(exc)


__all__ = ["SUPPORTED_TRANSFORMERS", "StaticDecoder", "build_static_decoder",
           "check_static_support", "transformers_refusal"]
