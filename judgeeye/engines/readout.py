"""Score-token read-outs (TRACT's CoT-RAIL): which token ids stand for the rating levels.

A read-out looks at the next-token distribution right after ``prompt + trace + cue`` and keeps
the probabilities of the level tokens. That is only meaningful when every level is exactly one
token *in that position*: ``"<rating>10"`` is ``["<", "rating", ">", "1", "0"]`` for many
tokenizers, so level 10 has no single next token, and a cue ending in a space may merge with the
digit (``"Rating: 3"`` → ``[..., ":", " 3"]``). :func:`level_token_ids` tokenizes ``cue + level``
and takes what follows the cue's own tokens; anything other than exactly one token raises.

The read-out reports the **raw** level probabilities (:func:`level_probabilities`), as TRACT's
CoT-RAIL defines them, and :func:`cot_rail_score` is its expected score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from judgeeye.engines.base import EngineError


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def level_token_ids(tokenizer: Any, levels: Sequence[int | str], cue: str) -> dict[str, int]:
    """``{"1": token_id, ...}``: the single token each level is right after ``cue``.

    Raises :class:`EngineError` naming every level that is not exactly one token there, with its
    tokenization, and when two levels share a token.
    """
    if not levels:
        raise EngineError("score read-out needs at least one level")
    cue_ids = _encode(tokenizer, cue) if cue else []
    ids: dict[str, int] = {}
    problems: list[str] = []
    for level in levels:
        key = str(level)
        full = _encode(tokenizer, cue + key)
        if full[: len(cue_ids)] != cue_ids:
            pieces = tokenizer.convert_ids_to_tokens(full)
            problems.append(
                f"{key!r}: {cue + key!r} tokenizes as {pieces}, which does not start with the "
                f"cue's tokens {tokenizer.convert_ids_to_tokens(cue_ids)} (the level merges with "
                "the cue; end the cue differently, e.g. without a trailing space)"
            )
            continue
        rest = full[len(cue_ids):]
        if len(rest) != 1:
            pieces = tokenizer.convert_ids_to_tokens(rest)
            problems.append(f"{key!r} -> {pieces} ({len(rest)} tokens)")
            continue
        ids[key] = rest[0]
    if problems:
        raise EngineError(
            "score read-out needs every level to be exactly one token after the cue "
            f"{cue!r}; not so for: " + "; ".join(problems)
        )
    if len(set(ids.values())) != len(ids):
        raise EngineError(f"levels share tokens after cue {cue!r}: {ids}")
    return ids


def level_probabilities(probs: Sequence[float], keys: Sequence[str]) -> dict[str, float]:
    """The raw probability of each level's token, ``p(str(y) | [x, s])`` over the whole vocabulary,
    as TRACT defines the CoT-RAIL predictor (Chiang et al., Eq. 3): not renormalised over the
    levels, so they sum to at most 1 (the rest is on other tokens)."""
    return {k: float(p) for k, p in zip(keys, probs, strict=True)}


def cot_rail_score(dist: dict[str, float]) -> float:
    """TRACT's CoT-RAIL prediction Σ_y p(str(y) | [x, s]) · y from raw level probabilities
    (:func:`level_probabilities`). Mass on other tokens is not spread over the levels: it pulls
    the score towards 0, as in the paper's definition."""
    return float(sum(int(level) * float(p) for level, p in dist.items()))


def renormalise(probs: Sequence[float], keys: Sequence[str]) -> dict[str, float]:
    """Level probabilities scaled to sum to 1 (uniform if they are all zero)."""
    total = float(sum(probs))
    if total <= 0.0 or total != total:  # all zero, or NaN
        return {k: 1.0 / len(keys) for k in keys}
    return {k: float(p) / total for k, p in zip(keys, probs, strict=True)}


__all__ = ["cot_rail_score", "level_probabilities", "level_token_ids", "renormalise"]
