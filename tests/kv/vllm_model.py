"""A tiny random-weight Llama saved as a local checkpoint (with a locally built
tokenizer) for the vLLM tests: no download."""

from __future__ import annotations

from pathlib import Path


def save_tiny_llama(directory: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from .tokenizer import build_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=4096, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, torch_dtype="float32")
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(directory)
    build_tokenizer(directory).save_pretrained(directory)
    return directory
