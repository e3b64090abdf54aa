"""A tiny word-level tokenizer built locally with `tokenizers` (no download)."""

from __future__ import annotations


def build_tokenizer(directory, vocab_size: int = 1000):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(vocab_size - len(vocab)):
        vocab[f"word{i}"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = f"{directory}/tokenizer.json"
    tok.save(path)
    return PreTrainedTokenizerFast(tokenizer_file=path, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
