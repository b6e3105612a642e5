"""A randomly initialised 2-layer Llama saved as a local checkpoint with the embedded model's
tokenizer (chat template included): the transformers engine's whole path in seconds, no hub."""

from __future__ import annotations

from pathlib import Path


def save_tiny_llama(folder: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from judgeeye.engines.model_loader import embedded_gguf_path, ensure_gguf_converted

    tokenizer = AutoTokenizer.from_pretrained(ensure_gguf_converted(embedded_gguf_path()))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 2
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
