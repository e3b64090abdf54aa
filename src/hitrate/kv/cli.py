"""`hitrate kv stats | clear`: the KV cache's persistent tiers (disk, remote).

The GPU and CPU tiers live inside the serving processes; these commands look at what
outlives them and is shared: chunks per namespace (model, dtype, layout, TP rank),
read from the namespace manifests each engine writes next to its chunks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, help="KV cache for self-hosted models (persistent tiers).")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="config file with a kv: section")]


def _settings(config: Path | None) -> Any:
    from hitrate.config import ConfigError, load_config
    from hitrate.kv.settings import resolve_settings

    try:
        return resolve_settings(load_config(config).kv if config else None)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _stores(settings: Any) -> list[tuple[str, str, Any]]:
    from hitrate.kv.settings import MB, remote_store
    from hitrate.redact import redact_url

    stores: list[tuple[str, str, Any]] = []
    if settings.disk_dir:
        from hitrate.stores.disk import DiskStore

        stores.append(("disk", settings.disk_dir,
                       DiskStore(settings.disk_dir, max_bytes=int(settings.disk_size_mb * MB))))
    if settings.remote_url:
        stores.append(("remote", redact_url(settings.remote_url),
                       remote_store(settings.remote_url, settings.remote_timeout)))
    return stores


async def collect(settings: Any) -> dict[str, Any]:
    """Per persistent tier: chunks and namespaces. Scans keys; reads only manifests."""
    import orjson

    from hitrate.kv.chunking import KEY_PREFIX

    manifest_prefix = KEY_PREFIX + "ns:"
    tiers = []
    for name, where, store in _stores(settings):
        entry: dict[str, Any] = {"tier": name, "location": where, "kind": store.name}
        try:
            counts: dict[str, int] = {}
            manifests: list[str] = []
            async for key in store.scan(KEY_PREFIX):
                if key.startswith(manifest_prefix):
                    manifests.append(key)
                else:
                    ns = key[len(KEY_PREFIX):].split(":", 1)[0]
                    counts[ns] = counts.get(ns, 0) + 1
            described: dict[str, Any] = {}
            for key, value in zip(manifests, await store.get_many(manifests), strict=True):
                if value is not None:
                    described[key[len(manifest_prefix):]] = orjson.loads(value)
            entry["chunks"] = sum(counts.values())
            entry["namespaces"] = [{"id": ns, "chunks": n, **described.get(ns, {})}
                                   for ns, n in sorted(counts.items(), key=lambda i: -i[1])]
            if store.name == "disk":
                entry["store_bytes"] = store.stats().bytes
        except Exception as exc:  # a tier that is down is reported, not fatal
            from hitrate.redact import redact_text

            entry["error"] = redact_text(f"{type(exc).__name__}: {exc}")
        finally:
            await store.close()
        tiers.append(entry)
    from hitrate.redact import redact_urls

    return {"settings": redact_urls(settings.model_dump()), "tiers": tiers}


def scrape(url: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The hitrate_kv_* samples a serving process exports (`hitrate.kv.metrics`)."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    return [{"name": s.name, "labels": s.labels, "value": s.value}
            for family in text_string_to_metric_families(text) if family.name.startswith("hitrate_kv_")
            for s in family.samples if not s.name.endswith("_created")]


@app.command("stats")
def stats(config: ConfigOption = None,
          as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
          metrics_url: Annotated[str | None, typer.Option(
              "--metrics-url", help="also print the live KV counters a serving process exports "
              "(its /metrics, or the vLLM connector's metrics_port)")] = None) -> None:
    """Chunks per tier and per namespace in the configured disk and remote tiers."""
    settings = _settings(config)
    report = asyncio.run(collect(settings))
    if metrics_url:
        try:
            report["metrics"] = scrape(metrics_url)
        except Exception as exc:  # unreachable, not Prometheus text: say so, still print tiers
            report["metrics_error"] = f"{type(exc).__name__}: {exc}"
    if as_json:
        import json

        typer.echo(json.dumps(report, indent=2))
        return
    from hitrate.redact import redact_url

    s = settings
    remote = redact_url(s.remote_url) if s.remote_url else "off"
    typer.echo(f"chunk size {s.chunk_size} tokens; tiers: gpu {s.gpu_size_mb:g} MB, cpu {s.cpu_size_mb:g} MB"
               f", disk {s.disk_dir or 'off'}, remote {remote}")
    if not report["tiers"]:
        typer.echo("no persistent tier configured (set kv.disk_dir / kv.remote_url or HITRATE_KV_*)")
    for tier in report["tiers"]:
        if "error" in tier:
            typer.echo(f"{tier['tier']:<7} {tier['location']}: unavailable ({tier['error']})")
            continue
        extra = f", {tier['store_bytes']:,} bytes" if "store_bytes" in tier else ""
        typer.echo(f"{tier['tier']:<7} {tier['location']}: {tier['chunks']:,} chunks{extra}")
        for ns in tier["namespaces"]:
            what = ", ".join(f"{k}={ns[k]}" for k in ("model", "dtype", "layout", "tp_rank", "tp_size")
                             if k in ns)
            typer.echo(f"        {ns['id']}  {ns['chunks']:,} chunks  {what}")
    if "metrics_error" in report:
        typer.echo(f"metrics {metrics_url}: unavailable ({report['metrics_error']})")
    for sample in report.get("metrics", []):
        if sample["name"].endswith("_bucket"):
            continue
        labels = ",".join(f"{k}={v}" for k, v in sample["labels"].items())
        typer.echo(f"{sample['name']}{{{labels}}} {sample['value']:g}")


@app.command("clear")
def clear(config: ConfigOption = None,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False) -> None:
    """Delete every KV chunk (hitrate:kv: keys only) from the disk and remote tiers."""
    settings = _settings(config)
    if not yes and not typer.confirm("Delete all hitrate KV chunks from the persistent tiers?"):
        raise typer.Exit(1)

    async def run() -> list[tuple[str, int]]:
        from hitrate.kv.chunking import KEY_PREFIX

        out = []
        for name, _, store in _stores(settings):
            try:
                out.append((name, await store.clear(KEY_PREFIX)))
            finally:
                await store.close()
        return out

    for name, removed in asyncio.run(run()):
        typer.echo(f"{name}: deleted {removed} keys")
