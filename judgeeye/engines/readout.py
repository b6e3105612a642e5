"""Score-token read-outs (TRACT's CoT-RAIL): which token ids stand for the rating levels, and
the forward passes that read their probabilities.

A read-out looks at the next-token distribution right after ``prompt + trace + cue`` and keeps
the probabilities of the level tokens. That is only meaningful when every level is exactly one
token *in that position*: ``"<rating>10"`` is ``["<", "rating", ">", "1", "0"]`` for many
tokenizers, so level 10 has no single next token, and a cue ending in a space may merge with the
digit (``"Rating: 3"`` → ``[..., ":", " 3"]``). :func:`level_token_ids` tokenizes ``cue + level``
and takes what follows the cue's own tokens; anything other than exactly one token raises.

The read-out reports the **raw** level probabilities (:func:`level_probabilities`), as TRACT's
CoT-RAIL defines them, and :func:`cot_rail_score` is its expected score.

After sampling, the k traces of an item share its prompt. Where the static decoder still holds
the sampled rows, the engine continues them (``StaticDecoder.continue_rows``: only the answer cue
runs, on the traces' own keys/values); else :func:`read_shared_prompt` runs the traces on top of
the prompt's keys/values, which the decoder kept from its prefill (else it prefills the prompt
once here), and computes the vocabulary logits only at each trace's last position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from judgeeye.engines.base import EngineError
from judgeeye.engines.plain_decode import cache_kwarg, new_cache
from judgeeye.engines.token_results import PromptCache


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


def read_shared_prompt(model: Any, prompt: Sequence[int], suffixes: Sequence[Sequence[int]],
                       level_ids: Sequence[int], keys: Sequence[str], *, pad_id: int,
                       cached: PromptCache | None = None) -> list[dict[str, float]]:
    """Level probabilities after ``prompt + suffix`` for each suffix (a trace and the cue).

    ``cached`` holds the keys/values of the prompt's first ``cached.length`` tokens (from the
    decoder's prefill); without it the prompt is prefilled here, once for all suffixes. The
    suffixes are right-padded (nothing real ever attends to a pad that follows it, so no mask is
    needed and positions are the cache's own) and only each row's last position is projected
    onto the vocabulary."""
    import torch

    device = model.device
    cache_kw = cache_kwarg(model)
    if cached is None or cached.length > len(prompt):
        cache = new_cache(model)
        model(input_ids=torch.tensor([list(prompt)], device=device), use_cache=True,
              logits_to_keep=1, **{cache_kw: cache})
        cached = PromptCache(len(prompt), [(layer.keys, layer.values) for layer in cache.layers])
    rest = list(prompt[cached.length:])
    rows = [rest + list(s) for s in suffixes]
    n, width = len(rows), max(len(r) for r in rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.as_tensor(row, dtype=torch.long)
    last = [len(r) - 1 for r in rows]
    keep = sorted(set(last))
    logits = model(input_ids=ids.to(device), use_cache=True,
                   logits_to_keep=torch.tensor(keep, device=device),
                   **{cache_kw: new_cache(model, cached, n)}).logits
    picked = logits[torch.arange(n, device=logits.device),
                    torch.tensor([keep.index(i) for i in last], device=logits.device)]
    return levels_from_logits(picked, level_ids, keys)


def read_each(model: Any, seqs: Sequence[Sequence[int]], level_ids: Sequence[int],
              keys: Sequence[str], *, pad_id: int, batch_size: int) -> list[dict[str, float]]:
    """Level probabilities after each whole sequence (prompt, trace and cue; different prompts):
    left-padded batches, only the last position projected onto the vocabulary."""
    import torch

    device = model.device
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[dict[str, float]] = [{} for _ in seqs]
    for s in range(0, len(order), batch_size):
        chunk = order[s: s + batch_size]
        width = max(len(seqs[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, i in enumerate(chunk):
            ids[r, width - len(seqs[i]):] = torch.as_tensor(list(seqs[i]))
            mask[r, width - len(seqs[i]):] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       position_ids=position_ids.to(device), use_cache=False,
                       logits_to_keep=1).logits[:, -1, :]
        for i, dist in zip(chunk, levels_from_logits(logits, level_ids, keys), strict=True):
            out[i] = dist
    return out


def levels_from_logits(logits: Any, level_ids: Sequence[int], keys: Sequence[str]
                       ) -> list[dict[str, float]]:
    """Raw level probabilities (:func:`level_probabilities`) from next-token logits, one row
    per read-out: the softmax over the whole vocabulary, taken at the level tokens."""
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    return [level_probabilities(row, keys) for row in
            probs[:, torch.as_tensor(list(level_ids), device=probs.device)].cpu().tolist()]


__all__ = ["cot_rail_score", "level_probabilities", "level_token_ids", "levels_from_logits",
           "read_each", "read_shared_prompt", "renormalise"]
