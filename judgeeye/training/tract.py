"""TRACT's CoT-RAFT objective (Chiang et al., Eq. 4) and where it reads the score.

For one example with completion tokens c_1..c_m (trace, answer cue, rating token y*, the rest)::

    loss = CE + λ · (Σ_y p(str(y) | [x, s]) · y − y*)²

* **CE** is the usual next-token cross-entropy over every completion token (the rating token
  included, as in TRACT's ``−log p([s, y*] | x)``), summed and divided by the number of
  completion tokens in the batch (under gradient accumulation: in the whole accumulated batch,
  as transformers' Trainer passes ``num_items_in_batch``).
* **p(str(y) | [x, s])** is read at the **rating token**, from the logits one position before
  it (the model predicts that token there), and it is the **raw** probability of the level's
  token: the softmax over the whole vocabulary, taken at the level tokens, *not* renormalised
  over the levels. That is how TRACT defines the CoT-RAIL predictor (Eq. 3) inside the loss
  (Eq. 4); mass on other tokens pulls the expected score towards 0 and is penalised. The
  engines' CoT-RAIL read-out (:mod:`judgeeye.engines.readout`) uses the same raw probabilities.
* The squared error is averaged over the examples of the micro-batch (divided by the number of
  accumulation steps when training, so accumulated gradients average over the whole batch).

**Where the rating is.** :mod:`judgeeye.training.data` knows the rating token's index exactly
(``Example.rating_pos``: the completion is tokenized as trace + cue, then the level token). It
travels to the loss as the per-token ``rating_mask`` column, which packing and padding move with
the tokens (:class:`RatingCollator`); y* is the level whose token sits there. Searching the labels
for the cue's tokens instead fails for SentencePiece tokenizers (Llama-2, Mistral), which
tokenize the cue differently on its own than after a trace, and would leave the RAFT term at 0 —
plain SFT under TRACT's name. So a TRACT batch without a rating position is an error.

Two implementations with one result: :func:`cot_raft_loss` on full logits (a reference), and
:class:`TractTrainer.compute_loss`, which keeps TRL's fused LM head (log-probabilities in chunks,
no (batch × length × vocab) logits) and projects only the hidden states at the rating positions
onto the output head (through the head's own forward; models that scale or soft-cap their logits
after the head, e.g. Gemma-2, are not covered by that shortcut).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IGNORE = -100


class MissingRatingError(ValueError):
    """A TRACT batch (or row) without its rating position: the RAFT term cannot be computed."""


@dataclass(frozen=True)
class RatingTokens:
    """The rating levels (ascending) and their token ids right after the answer cue."""

    level_ids: tuple[int, ...]
    levels: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, levels: list[int], cue: str) -> RatingTokens:
        from judgeeye.engines.readout import level_token_ids

        ids = level_token_ids(tokenizer, levels, cue)
        return cls(tuple(ids[str(lv)] for lv in levels), tuple(int(lv) for lv in levels))


def rating_targets(rating_mask: Any, labels: Any, rating: RatingTokens) -> tuple[Any, Any, Any]:
    """(rows, positions, gold values) of the rating tokens that ``rating_mask`` marks.

    Raises :class:`MissingRatingError` when the batch has none, or when a marked position does
    not hold a level token in ``labels`` (data and tokens out of step).
    """
    import torch

    rows, cols = torch.nonzero(rating_mask.to(labels.device), as_tuple=True)
    if rows.numel() == 0:
        raise MissingRatingError(
            "TRACT: this batch has no rating position, so the CoT-RAFT term cannot be computed "
            "(the rows must come from judgeeye.training.data with rating_mask=True)")
    tokens = labels[rows, cols]
    ids = torch.tensor(rating.level_ids, device=labels.device)
    match = tokens[:, None] == ids[None, :]
    if not bool(match.any(dim=1).all()):
        bad = sorted({int(t) for t, ok in zip(tokens.tolist(), match.any(dim=1).tolist()) if not ok})
        raise MissingRatingError(f"TRACT: marked rating positions hold tokens {bad}, which are not rating levels "
                                 f"(level tokens: {list(rating.level_ids)})")
    values = torch.tensor(rating.levels, dtype=torch.float32, device=labels.device)
    return rows, cols, match.float() @ values


def expected_from_logits(logits: Any, rating: RatingTokens) -> Any:
    """Σ_y p(y)·y with p the softmax over the whole vocabulary of ``logits`` (n, vocab), taken at
    the level tokens: TRACT's raw level probabilities (see the module docstring)."""
    import torch

    values = torch.tensor(rating.levels, dtype=torch.float32, device=logits.device)
    ids = torch.tensor(rating.level_ids, device=logits.device)
    probs = torch.softmax(logits.float(), dim=-1)[:, ids]
    return probs @ values


def cot_raft_loss(logits: Any, labels: Any, rating_mask: Any, rating: RatingTokens, lam: float = 1.0,
                  num_items_in_batch: Any = None, accumulation_steps: int = 1) -> tuple[Any, dict[str, float]]:
    """The CoT-RAFT loss from full logits (batch, length, vocab), unshifted labels and the
    rating mask. Returns (loss, parts) where parts has "ce" (mean per token) and "raft" (mean
    squared error)."""
    import torch
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    ce_sum = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                             ignore_index=IGNORE, reduction="sum")
    n_tokens = (shift_labels != IGNORE).sum()
    denom = num_items_in_batch if num_items_in_batch is not None else n_tokens.clamp(min=1)
    ce = ce_sum / torch.as_tensor(denom, device=ce_sum.device)
    rows, cols, gold = rating_targets(rating_mask, labels, rating)
    level_logits = logits[rows.to(logits.device), (cols - 1).to(logits.device)]
    raft = ((expected_from_logits(level_logits, rating) - gold.to(logits.device)) ** 2).mean()
    loss = ce + lam * raft / max(1, accumulation_steps)
    parts = {"ce": float(ce_sum.detach() / n_tokens.clamp(min=1)), "raft": float(raft.detach())}
    return loss, parts


class RatingCollator:
    """TRL's collator plus the ``rating_mask`` column, padded (or flattened, padding-free) exactly
    as the tokens are. Checks that every row carries its rating position: one per example, one
    per packed sequence."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        masks = []
        for e in examples:
            mask = list(e["rating_mask"])
            expected = len(e["seq_lengths"]) if "seq_lengths" in e else 1
            if sum(mask) != expected:
                raise MissingRatingError(f"TRACT: a training row has {sum(mask)} rating positions, expected "
                                         f"{expected}")
            masks.append(mask)
        batch = self.inner([{k: v for k, v in e.items() if k != "rating_mask"} for e in examples])
        out = torch.zeros_like(batch["input_ids"])
        if getattr(self.inner, "padding_free", False):
            flat = [m for mask in masks for m in mask]
            out[0, :len(flat)] = torch.tensor(flat)
        else:
            for b, mask in enumerate(masks):  # TRL pads on the right
                out[b, :len(mask)] = torch.tensor(mask)
        batch["rating_mask"] = out
        return batch


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

    ``model`` must carry TRL's fused head (``add_fused_lm_head``; SFTTrainer adds it);
    ``inputs`` holds the collated batch with its ``rating_mask`` (taken out before the forward
    pass). Returns (CE: summed NLL / num_items_in_batch or the batch's completion tokens, RAFT:
    mean squared error over the batch's rating positions, the fused outputs, parts as floats).
    Only the hidden states at the rating positions go through the whole output head.
    """
    import torch

    inputs = dict(inputs)
    rating_mask = inputs.pop("rating_mask")
    labels = inputs["labels"]
    rows, cols, gold = rating_targets(rating_mask, labels, rating)
    outputs = model(**inputs, fused_lm_head=True)
    n_tokens = outputs.label_mask.sum()
    ce_sum = -outputs.log_probs.sum()
    denom = num_items_in_batch if num_items_in_batch is not None else n_tokens.clamp(min=1)
    ce = ce_sum / torch.as_tensor(denom, device=ce_sum.device)
    hidden, capture.hidden = capture.hidden, None
    if hidden is None:
        raise RuntimeError("TRACT: the backbone's hidden states were not captured in this forward pass")
    head = capture.causal_lm.get_output_embeddings()
    h = hidden[rows.to(hidden.device), (cols - 1).to(hidden.device)].to(head.weight.device)
    logits = head(h)  # the head's own forward (a LoRA on it included); no logit scaling or soft-capping
    raft = ((expected_from_logits(logits, rating) - gold.to(logits.device)) ** 2).mean()
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


__all__ = ["HiddenCapture", "MissingRatingError", "RatingCollator", "RatingTokens", "cot_raft_loss",
           "expected_from_logits", "fused_cot_raft_loss", "fused_cot_raft_terms", "make_tract_trainer_class",
           "rating_targets"]
