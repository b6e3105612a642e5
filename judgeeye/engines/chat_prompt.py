"""Chat prompts as local engines see them: the template rendered, token ids, and the ids that end
or pad a sequence."""

from __future__ import annotations

from typing import Any

from judgeeye.engines.base import Messages


def render_chat(tokenizer: Any, messages: Messages) -> str:
    """The chat template applied to ``messages`` with the assistant turn opened."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if not isinstance(text, str):  # some versions return a list for a single conversation
            text = text[0]
        return text
    # No template (a base model): a plain transcript.
    lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages]
    return "\n".join(lines) + "\nassistant:"


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of an already templated text (the template carries its special tokens)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def eos_token_ids(model: Any, tokenizer: Any | None) -> list[int]:
    """Every token id that ends a sequence (generation config and tokenizer)."""
    ids: list[int] = []
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, int):
        ids.append(eos)
    elif eos:
        ids.extend(int(e) for e in eos)
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return sorted(set(ids))


def pad_token_id(model: Any, tokenizer: Any | None, eos: list[int]) -> int:
    """The id that pads batches: the tokenizer's, the generation config's, else an EOS."""
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    pad = getattr(getattr(model, "generation_config", None), "pad_token_id", None)
    if isinstance(pad, int):
        return pad
    return eos[0] if eos else 0


__all__ = ["encode_text", "eos_token_ids", "pad_token_id", "render_chat"]
