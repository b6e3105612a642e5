"""TRACT's CoT-RAFT objective (Chiang et al., Eq. 4) and where it reads the score.

For one example with completion tokens c_1..c_m (trace, answer cue, rating token y*, the rest)::

    loss = CE + λ · (Σ_y p(y) · y − y*)²

* **CE** is the usual next-token cross-entropy over every completion token (the rating token
  included, as in TRACT's ``−log p([s, y*] | x)``), summed and divided by the number of
  completion tokens in the batch (under gradient accumulation: in the whole accumulated batch,
  as transformers' Trainer passes ``num_items_in_batch``).
* **p(y)** is read at the **rating token**: the position ``r`` whose label is a rating-level
  token right after the answer cue (``<rating>``; see :mod:`judgeeye.training.data`). Its
  distribution comes from the logits at ``r − 1`` (the model predicts token r there), **over
  the rating-level tokens only**: ``p(y) = softmax(logits[r−1, ids])``, which equals the full
  softmax renormalised over the levels (TRACT reads ``p(str(y) | [x, s])`` for y in the scale;
  the mass on other tokens is dropped, exactly as the engines' CoT-RAIL read-out does).
* The squared error is averaged over the examples of the micro-batch (divided by the number of
  accumulation steps when training, so accumulated gradients average over the whole batch).

The rating position is found from the labels alone: in every maximal span of supervised labels
(one completion, also inside packed sequences) it is the last position whose label is a level
token preceded by the cue tokens. y* is that level's value, i.e. the gold label written in the
completion.

Two implementations with one result: :func:`cot_raft_loss` on full logits (a reference, also
usable as a ``compute_loss_func(outputs, labels, num_items_in_batch)``), and
:class:`TractTrainer.compute_loss`, which keeps TRL's fused LM head (log-probabilities in chunks,
no (batch × length × vocab) logits) and projects only the hidden states at the rating positions
onto the level tokens' rows of the output head. TRL 1.16 deprecates ``compute_loss_func`` (it
costs an extra forward pass), hence the subclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IGNORE = -100


@dataclass(frozen=True)
class RatingTokens:
    """The answer cue's token ids and the rating levels with their token ids (ascending)."""

    cue_ids: tuple[int, ...]
    level_ids: tuple[int, ...]
    levels: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, levels: list[int], cue: str) -> RatingTokens:
        from judgeeye.engines.readout import level_token_ids

        ids = level_token_ids(tokenizer, levels, cue)
        cue_ids = tuple(tokenizer(cue, add_special_tokens=False)["input_ids"]) if cue else ()
        return cls(cue_ids, tuple(ids[str(lv)] for lv in levels), tuple(int(lv) for lv in levels))


def rating_positions(labels: Any, rating: RatingTokens) -> tuple[Any, Any, Any]:
    """(rows, positions, gold values) of the rating token of every completion in ``labels``.

    ``labels`` is (batch, length), unshifted, -100 outside completions. A completion without a
    rating token (cut, or labels-only of another format) contributes nothing.
    """
    import torch

    lab = labels.detach().cpu()
    level_of = {tid: float(v) for tid, v in zip(rating.level_ids, rating.levels)}
    cue = list(rating.cue_ids)
    rows, cols, gold = [], [], []
    for b in range(lab.shape[0]):
        seq = lab[b].tolist()
        last: int | None = None
        for t, tok in enumerate(seq):
            if tok == IGNORE:
                if last is not None:
                    rows.append(b), cols.append(last), gold.append(level_of[seq[last]])
                    last = None
                continue
            if tok in level_of and t >= len(cue) and seq[t - len(cue):t] == cue:
                last = t
        if last is not None:
            rows.append(b), cols.append(last), gold.append(level_of[seq[last]])
    device = labels.device
    return (torch.tensor(rows, dtype=torch.long, device=device),
            torch.tensor(cols, dtype=torch.long, device=device),
            torch.tensor(gold, dtype=torch.float32, device=device))


def expected_from_logits(level_logits: Any, rating: RatingTokens) -> Any:
    """Σ_y p(y)·y with p the softmax over the level logits (renormalised over the levels)."""
    import torch

    values = torch.tensor(rating.levels, dtype=torch.float32, device=level_logits.device)
    probs = torch.softmax(level_logits.float(), dim=-1)
    return probs @ values


def cot_raft_loss(logits: Any, labels: Any, rating: RatingTokens, lam: float = 1.0,
                  num_items_in_batch: Any = None, accumulation_steps: int = 1) -> tuple[Any, dict[str, float]]:
    """The CoT-RAFT loss from full logits (batch, length, vocab) and unshifted labels.

    Returns (loss, parts) where parts has "ce" (mean per token) and "raft" (mean squared error).
    """
    import torch
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    ce_sum = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                             ignore_index=IGNORE, reduction="sum")
    n_tokens = (shift_labels != IGNORE).sum()
    denom = num_items_in_batch if num_items_in_batch is not None else n_tokens.clamp(min=1)
    ce = ce_sum / torch.as_tensor(denom, device=ce_sum.device)
    rows, cols, gold = rating_positions(labels, rating)
    if rows.numel():
        ids = torch.tensor(rating.level_ids, device=logits.device)
        level_logits = logits[rows.to(logits.device), (cols - 1).to(logits.device)][:, ids]
        sq = (expected_from_logits(level_logits, rating) - gold.to(logits.device)) ** 2
        raft = sq.mean()
    else:
        raft = ce_sum * 0.0
    loss = ce + lam * raft / max(1, accumulation_steps)
    parts = {"ce": float(ce_sum.detach() / n_tokens.clamp(min=1)), "raft": float(raft.detach())}
    return loss, parts


class TractLoss:
    """CoT-RAFT as a ``compute_loss_func(outputs, labels, num_items_in_batch)`` (full logits)."""

    def __init__(self, rating: RatingTokens, lam: float = 1.0, accumulation_steps: int = 1) -> None:
        self.rating, self.lam, self.accumulation_steps = rating, lam, accumulation_steps
        self.last_parts: dict[str, float] = {}

    def __call__(self, outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        loss, self.last_parts = cot_raft_loss(outputs.logits, labels, self.rating, self.lam, num_items_in_batch,
                                              self.accumulation_steps)
        return loss


# =========================================================================== fused version


def _backbone(model: Any) -> Any:
    """The decoder stack whose output the LM head reads (under PEFT and accelerate wrappers)."""
    inner = model
    while hasattr(inner, "module") and not hasattr(inner, "get_output_embeddings"):
        inner = inner.module  # DDP / accelerate wrappers
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner.base_model, inner


class HiddenCapture:
    """Keeps the backbone's last hidden states of the most recent forward pass (a forward hook),
    so the rating positions can be projected without a second pass."""

    def __init__(self, model: Any) -> None:
        backbone, self.causal_lm = _backbone(model)
        self.hidden: Any = None
        self._handle = backbone.register_forward_hook(self._hook)

    def _hook(self, module: Any, args: Any, output: Any) -> None:
        self.hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def remove(self) -> None:
        self._handle.remove()


def fused_cot_raft_terms(model: Any, inputs: dict[str, Any], capture: HiddenCapture, rating: RatingTokens,
                         num_items_in_batch: Any = None) -> tuple[Any, Any, Any, dict[str, float]]:
    """CoT-RAFT's two terms with TRL's fused LM head: one forward pass, no full logits.

    ``model`` must carry TRL's fused head (``add_fused_lm_head``; SFTTrainer adds it). Returns
    (CE: summed NLL / num_items_in_batch or the batch's completion tokens, RAFT: mean squared
    error over the batch's rating positions, the fused outputs, parts as floats).
    """
    import torch

    labels = inputs["labels"]
    outputs = model(**inputs, fused_lm_head=True)
    n_tokens = outputs.label_mask.sum()
    ce_sum = -outputs.log_probs.sum()
    denom = num_items_in_batch if num_items_in_batch is not None else n_tokens.clamp(min=1)
    ce = ce_sum / torch.as_tensor(denom, device=ce_sum.device)
    rows, cols, gold = rating_positions(labels, rating)
    hidden = capture.hidden
    if rows.numel() and hidden is not None:
        head = capture.causal_lm.get_output_embeddings()
        ids = torch.tensor(rating.level_ids, device=head.weight.device)
        h = hidden[rows.to(hidden.device), (cols - 1).to(hidden.device)].to(head.weight.device)
        level_logits = torch.nn.functional.linear(
            h, head.weight[ids], None if head.bias is None else head.bias[ids])
        sq = (expected_from_logits(level_logits, rating) - gold.to(level_logits.device)) ** 2
        raft = sq.mean()
    else:
        raft = ce_sum * 0.0
    capture.hidden = None
    parts = {"ce": float(ce_sum.detach() / n_tokens.clamp(min=1)), "raft": float(raft.detach())}
    return ce, raft, outputs, parts


def fused_cot_raft_loss(model: Any, inputs: dict[str, Any], capture: HiddenCapture, rating: RatingTokens,
                        lam: float, num_items_in_batch: Any = None,
                        accumulation_steps: int = 1) -> tuple[Any, Any, dict[str, float]]:
    """CE + λ·RAFT / accumulation steps, from :func:`fused_cot_raft_terms`."""
    ce, raft, outputs, parts = fused_cot_raft_terms(model, inputs, capture, rating, num_items_in_batch)
    return ce + lam * raft / max(1, accumulation_steps), outputs, parts


def make_tract_trainer_class():  # type: ignore[no-untyped-def]
    """``TractTrainer``: TRL's SFTTrainer with the CoT-RAFT loss (built lazily: imports TRL)."""
    from trl import SFTTrainer

    class TractTrainer(SFTTrainer):
        """SFTTrainer whose loss is CoT-RAFT (see the module docstring)."""

        #: compute_loss divides by num_items_in_batch and the accumulation steps itself
        loss_is_scaled_for_ga = True

        def __init__(self, *args: Any, rating: RatingTokens, lam: float = 1.0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.rating, self.lam = rating, lam
            self._capture = HiddenCapture(self.model)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            mode = "train" if self.model.training else "eval"
            inputs["use_cache"] = False
            steps = self.current_gradient_accumulation_steps if (mode == "train" and num_items_in_batch is not None) else 1
            ce, raft, outputs, parts = fused_cot_raft_terms(model, inputs, self._capture, self.rating,
                                                            num_items_in_batch)
            world = 1
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # like SFTTrainer: num_items_in_batch counts every rank's tokens and DDP averages the
                # gradients; the RAFT term is a per-rank mean, which that averaging makes global
                world = self.accelerator.num_processes
            loss = ce * world + self.lam * raft / max(1, steps)
            valid = outputs.label_mask.sum()
            self._metrics[mode]["ce"].append(parts["ce"])
            self._metrics[mode]["raft_mse"].append(parts["raft"])
            if valid > 0:
                self._metrics[mode]["mean_token_accuracy"].append(float(outputs.is_top1.sum() / valid))
            if mode == "train":
                if "attention_mask" in inputs:
                    self._total_train_tokens += int(inputs["attention_mask"].sum())
                elif "position_ids" in inputs:
                    self._total_train_tokens += int(inputs["position_ids"].size(1))
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, outputs) if return_outputs else loss

    return TractTrainer


__all__ = ["HiddenCapture", "RatingTokens", "TractLoss", "cot_raft_loss", "expected_from_logits",
           "fused_cot_raft_loss", "fused_cot_raft_terms", "make_tract_trainer_class", "rating_positions"]
