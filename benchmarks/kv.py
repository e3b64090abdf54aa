"""KV cache: time to first token with and without cached prefix KV, per tier.

A random-weight Llama-style model (8 layers, GQA 8/2 heads, head dim 64, float32,
built from a config) prefills prompts of N shared-prefix tokens + 64 new tokens. For
each N: one cold prefill of the whole prompt (the baseline), then, per tier, the
prefix's chunks are stored (store bandwidth), loaded (load bandwidth), and the prompt
is prefilled again reusing them (warm TTFT). Exactness: the warm logits against the
same computation fed KV that never left the model (`max_abs_diff`, expected 0.0) and
against the cold full prefill (`max_abs_diff_vs_full_prefill`: other matmul shapes).

`--sections serde`: per-serde rows (`kv.remote_serde` / `disk_serde`) on real KV, the
prompt KV of SmolLM2-135M-Instruct (real weights, `hitrate.kv.samples`) over a RAG
prompt: compression ratio, dumps/loads MB/s of the serde alone, store/load MB/s and
warm TTFT through the disk and Redis tiers (fresh engine, nothing in memory), and
exactness: max_abs_diff of the loaded KV (lossless: 0.0), KL / top-1 agreement over a
16-token greedy answer (lossy). bfloat16 rows: the same KV cast to bfloat16.

`--sections chat`: a 3-turn chat on the random-weight model (a 1,024-token system
prompt, 64-token questions, `--chat-answer` (192) token answers, `--chat-chunk` (256)
token chunks), TTFT per turn with and without `save_decode_cache` (CPU tier): without
it, every turn recomputes the previous answer past the prompt's last whole chunk.

`--sections redis`: load bandwidth of 64 MB of KV chunks (2 MB each) from a local
redis-server: the shared RedisStore's MGET, the KV tier's bulk reader with 1 and 4
connections, and the ceiling: one raw socket reading the same MGET reply into one
buffer without parsing it.

Prints one JSON line. Wall and CPU seconds (the machine is shared and noisy).
Usage: python benchmarks/kv.py [--tokens 2048 8192 16384] [--tiers cpu disk redis]
       python benchmarks/kv.py --sections serde [--serde-docs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import torch

from hitrate.kv import hf
from hitrate.kv.tiers import CPUTier, StoreTier

MB = 1024 * 1024


def build_model(layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1536,
                         num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=2,
                         head_dim=64, max_position_embeddings=65536, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def ttft(model, tokens, engine):
    """Prefill (reusing `engine`'s chunks when given) and pick the first token."""
    out = hf.prefill(model, tokens, engine, store=False)
    out.logits.argmax().item()
    return out


class Redis:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (install it or pass --tiers cpu disk)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--maxmemory", "2gb"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def make_tier(kind: str, workdir: str, redis: Redis | None, fresh: bool = True):
    if kind == "cpu":
        return CPUTier(4096 * MB)
    if kind == "disk":
        from hitrate.stores.disk import DiskStore

        where = tempfile.mkdtemp(dir=workdir) if fresh else workdir
        return StoreTier(DiskStore(where, max_bytes=8192 * MB), name="disk")
    from hitrate.kv.redis_reader import RedisBulkReader
    from hitrate.kv.settings import remote_store

    assert redis is not None  # reads as `build_tiers` sets them up for a redis:// URL
    return StoreTier(remote_store(redis.url, timeout=60.0), name="redis",
                     reader=RedisBulkReader(redis.url, timeout=60.0))


def run_length(model, n: int, suffix: int, tiers: list[str], repeats: int, workdir: str, redis) -> dict:
    g = torch.Generator().manual_seed(n)
    vocab = model.config.vocab_size
    prefix = torch.randint(0, vocab, (n,), generator=g).tolist()
    prompt = prefix + torch.randint(0, vocab, (suffix,), generator=g).tolist()

    cold, cold_wall, cold_cpu = timed(lambda: ttft(model, prompt, None))
    kv_bytes = None
    # The same computation as a warm run, fed KV that never left the model.
    kv_ref = torch.stack([torch.stack((layer.keys[0, :, :n], layer.values[0, :, :n]))
                          for layer in cold.cache.layers]).clone()
    with torch.no_grad():
        reference = model(input_ids=torch.tensor([prompt[n:]]), use_cache=True, logits_to_keep=1,
                          past_key_values=hf.cache_from_kv(kv_ref, model.config)).logits[0, -1]
    kv_bytes = kv_ref.numel() * kv_ref.element_size()
    out: dict = {"prompt_tokens": len(prompt), "cached_prefix_tokens": n, "new_tokens": suffix,
                 "kv_bytes": kv_bytes, "cold_ttft_wall_s": round(cold_wall, 4),
                 "cold_ttft_cpu_s": round(cold_cpu, 4), "tiers": {}}
    slicer = hf.kv_slicer(cold.cache)
    for kind in tiers:
        engine = hf.make_engine(model, [make_tier(kind, workdir, redis)], model_id=f"bench-{n}")
        try:
            _, store_wall, _ = timed(lambda e=engine: e.store(prefix, slicer, wait=True))
            loads = [timed(lambda e=engine: e.retrieve(prefix))[1] for _ in range(repeats)]
            runs = [timed(lambda e=engine: ttft(model, prompt, e)) for _ in range(repeats)]
            warm = runs[-1][0]
            assert warm.cached_tokens == n, (kind, warm.cached_tokens)
            wall = statistics.median(r[1] for r in runs)
            cpu = statistics.median(r[2] for r in runs)
            out["tiers"][kind] = {
                "warm_ttft_wall_s": round(wall, 4), "warm_ttft_cpu_s": round(cpu, 4),
                "warm_ttft_wall_min_s": round(min(r[1] for r in runs), 4),
                "ttft_wall_speedup": round(cold_wall / wall, 2),
                "ttft_cpu_speedup": round(cold_cpu / cpu, 2),
                "max_abs_diff": (warm.logits - reference).abs().max().item(),
                "max_abs_diff_vs_full_prefill": (warm.logits - cold.logits).abs().max().item(),
                "store_MBps": round(kv_bytes / MB / store_wall, 1),
                "load_MBps": round(kv_bytes / MB / statistics.median(loads), 1),
                "load_s": round(statistics.median(loads), 4),
            }
            engine.clear()
        finally:
            engine.close()
    return out


def serde_rows(docs: int, tiers: list[str], redis, workdir: str) -> dict:
    from hitrate.kv import blend_quality as quality
    from hitrate.kv import codec, samples, serde

    model, tokenizer = samples.smollm2()
    documents = samples.stdlib_documents(docs, 3000)
    prompt = (samples.RAG_SYSTEM + "".join(f"Document:\n{d}\n\n" for d in documents)
              + "Question: How do I write JSON to a file?<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer(prompt)["input_ids"]
    ref = quality.reference(model, ids, 16)
    kv32 = quality.prompt_kv(model, ids)
    prefix = ids[:-1]
    own = quality.with_prompt_kv(model, ids, kv32, ref)
    _, cold_wall, _ = timed(lambda: ttft(model, ids, None))
    out: dict = {"model": "SmolLM2-135M-Instruct", "prompt_tokens": len(ids),
                 "cold_ttft_wall_s": round(cold_wall, 4), "own_kv_agreement": own.to_dict(), "rows": []}
    for dtype in ("float32", "bfloat16"):
        kv = kv32.to(getattr(torch, dtype))
        raw = kv.numel() * kv.element_size()
        engine = hf.make_engine(model, [CPUTier(64 * MB)], model_id="serde-probe")
        chunks = [codec.encode(kv.narrow(3, c.start, c.num_tokens), token_axis=3, layout=hf.LAYOUT,
                                  key_digest=c.digest) for c in engine.keyer.chunks(prefix)]
        engine.close()
        for name in ("naive", "zstd", "int8"):
            codec_ = serde.get(name)
            packed, dump_s, _ = timed(lambda c=codec_, cs=chunks: [c.dumps(x) for x in cs])
            _, load_s, _ = timed(lambda p=packed: [serde.loads(x) for x in p])
            row = {"serde": name, "dtype": dtype, "kv_MB": round(raw / MB, 1),
                   "ratio": round(sum(map(len, chunks)) / sum(map(len, packed)), 3),
                   "dumps_MBps": round(raw / MB / dump_s, 1), "loads_MBps": round(raw / MB / load_s, 1),
                   "tiers": {}}
            for kind in tiers:
                where = tempfile.mkdtemp(dir=workdir)  # the reader opens the writer's disk store
                tier = make_tier(kind, where, redis, fresh=False)
                tier.serde = codec_
                model_id = f"serde-{dtype}-{name}-{kind}"
                writer = hf.make_engine(model, [tier], model_id=model_id)
                _, store_s, _ = timed(lambda w=writer, x=kv: w.store(prefix, x, wait=True))
                writer.flush()
                writer.close()
                reader = hf.make_engine(model, [make_tier(kind, where, redis, fresh=False)],
                                        model_id=model_id)
                hit, fetch_s, _ = timed(lambda r=reader: r.retrieve(prefix))
                assert hit.num_tokens == len(prefix), (kind, name, hit.num_tokens)
                entry = {"store_MBps": round(raw / MB / store_s, 1),
                         "load_MBps": round(raw / MB / fetch_s, 1)}
                if dtype == "float32":
                    _, warm_s, _ = timed(lambda r=reader: ttft(model, ids, r))
                    entry["warm_ttft_wall_s"] = round(warm_s, 4)
                reader.clear()
                reader.close()
                row["tiers"][kind] = entry
            got = hit.kv
            row["max_abs_diff"] = (got.float() - kv.float()).abs().max().item()
            if dtype == "float32":
                row["agreement"] = quality.with_prompt_kv(model, ids, got, ref).to_dict()
            out["rows"].append(row)
    return out


def chat_rows(model, turns: int = 3, system: int = 1024, question: int = 64, answer: int = 192,
              repeats: int = 2, chunk: int = 256) -> dict:
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(7)
    system_ids = torch.randint(0, vocab, (system,), generator=g).tolist()
    questions = [torch.randint(0, vocab, (question,), generator=g).tolist() for _ in range(turns)]
    out: dict = {"system_tokens": system, "question_tokens": question, "answer_tokens": answer,
                 "chunk_size": chunk}
    for save in (False, True):
        rows = []
        for rep in range(repeats):
            engine = hf.make_engine(model, [CPUTier(4096 * MB)], model_id=f"chat-{save}-{rep}",
                                    chunk_size=chunk)
            history = list(system_ids)
            try:
                for turn in range(turns):
                    prompt = history + questions[turn]
                    first, wall, cpu = timed(lambda e=engine, p=prompt: ttft(model, p, e))
                    reply = hf.generate(model, None, prompt, engine, max_new_tokens=answer,
                                        min_new_tokens=answer, do_sample=False, save_decode_cache=save)
                    engine.flush()
                    if rep == 0:
                        rows.append({"turn": turn + 1, "prompt_tokens": len(prompt),
                                     "cached_tokens": first.cached_tokens, "ttft_wall_s": [],
                                     "ttft_cpu_s": []})
                    rows[turn]["ttft_wall_s"].append(round(wall, 4))
                    rows[turn]["ttft_cpu_s"].append(round(cpu, 4))
                    history = prompt + reply.tokens
            finally:
                engine.close()
        for row in rows:
            row["ttft_wall_s"] = min(row["ttft_wall_s"])
            row["ttft_cpu_s"] = min(row["ttft_cpu_s"])
        out["with_decode_cache" if save else "prompt_only"] = rows
    return out


def redis_rows(redis, total_mb: int = 64, chunk_mb: int = 2, repeats: int = 5) -> dict:
    import asyncio

    from hitrate.kv.redis_reader import RedisBulkReader
    from hitrate.kv.settings import remote_store

    keys = [f"hitrate:kv:bench:{i}" for i in range(total_mb // chunk_mb)]
    payload = os.urandom(chunk_mb * MB)
    import redis as redis_py

    client = redis_py.Redis(port=redis.port)
    client.mset({k: payload for k in keys})
    total = len(keys) * len(payload)

    def best(fn) -> float:
        return round(total / MB / min(timed(fn)[1] for _ in range(repeats)), 1)

    store = remote_store(redis.url, timeout=60.0)
    loop = asyncio.new_event_loop()
    out = {"MB": total / MB, "chunk_MB": chunk_mb,
           "redis_store_mget_MBps": best(lambda: loop.run_until_complete(store.get_many(keys)))}
    loop.run_until_complete(store.close())
    for conns in (1, 4):
        reader = RedisBulkReader(redis.url, connections=conns, min_split_bytes=8 * MB)
        loop.run_until_complete(reader.get_many(keys[:1]))  # learn the value size
        fetch = reader.get_many
        out[f"bulk_reader_{conns}_conn_MBps"] = best(lambda f=fetch: loop.run_until_complete(f(keys)))
        reader.close()
    loop.close()

    request = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
    request += [b"$%d\r\n%s\r\n" % (len(k), k.encode()) for k in keys]
    reply_len = len(b"*%d\r\n" % len(keys)) + len(keys) * (len(b"$%d\r\n" % len(payload)) + len(payload) + 2)
    buf = bytearray(reply_len)
    sock = socket.create_connection(("127.0.0.1", redis.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def raw() -> None:
        sock.sendall(b"".join(request))
        view, got = memoryview(buf), 0
        while got < reply_len:
            got += sock.recv_into(view[got:])

    out["raw_socket_ceiling_MBps"] = best(raw)
    sock.close()
    client.delete(*keys)
    return out


def memcpy_MBps(nbytes: int) -> float:
    """A plain tensor copy of at least 256 MB (larger than any cache): the memory
    bandwidth the CPU tier's loads are compared with."""
    nbytes = max(nbytes, 256 * MB)
    src = torch.empty(nbytes // 4, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    dst.copy_(src)
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        dst.copy_(src)
        samples.append(time.perf_counter() - t)
    return round(nbytes / MB / min(samples), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 8192, 16384],
                        help="cached prefix lengths")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--tiers", nargs="+", default=["cpu", "disk", "redis"],
                        choices=["cpu", "disk", "redis"])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sections", nargs="+", default=["ttft"], choices=["ttft", "serde", "chat", "redis"])
    parser.add_argument("--serde-docs", type=int, default=4, help="documents in the serde prompt")
    parser.add_argument("--chat-chunk", type=int, default=256, help="chunk size for --sections chat")
    parser.add_argument("--chat-answer", type=int, default=192, help="answer tokens per chat turn")
    args = parser.parse_args()
    if "ttft" not in args.sections:
        return sections_only(args)

    model = build_model(args.layers)
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]]))  # warm-up: first-call overheads
    redis = Redis() if "redis" in args.tiers else None
    workdir = tempfile.mkdtemp(prefix="hitrate-kv-bench-")
    try:
        results = {f"tokens_{n}": run_length(model, n, args.new_tokens, args.tiers, args.repeats, workdir,
                                             redis)
                   for n in args.tokens}
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    config = model.config
    bytes_per_token = (config.num_hidden_layers * 2 * config.num_key_value_heads * config.head_dim
                       * torch.finfo(model.dtype).bits // 8)
    largest = max(r["kv_bytes"] for r in results.values())
    print(json.dumps({
        "benchmark": "kv", "model": {"layers": config.num_hidden_layers, "hidden": config.hidden_size,
                                     "heads": config.num_attention_heads,
                                     "kv_heads": config.num_key_value_heads, "head_dim": config.head_dim,
                                     "dtype": "float32"},
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "chunk_size": 256, "bytes_per_token": bytes_per_token,
        "memcpy_MBps": memcpy_MBps(largest), "results": results,
    }))


def sections_only(args) -> None:
    redis = Redis() if "redis" in args.tiers else None
    workdir = tempfile.mkdtemp(prefix="hitrate-kv-bench-")
    report: dict = {"benchmark": "kv", "torch": torch.__version__, "cpus": os.cpu_count()}
    try:
        if "serde" in args.sections:
            tiers = [t for t in args.tiers if t != "cpu"]
            report["serde"] = serde_rows(args.serde_docs, tiers, redis, workdir)
        if "redis" in args.sections:
            report["redis"] = redis_rows(redis)
        if "chat" in args.sections:
            report["chat"] = chat_rows(build_model(args.layers), answer=args.chat_answer,
                                       repeats=args.repeats, chunk=args.chat_chunk)
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
