"""`hitrate serve | demo | stats | flush | costs show | version`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="hitrate: a caching gateway for LLM applications.")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="native or LiteLLM-style YAML")],
    host: Annotated[str | None, typer.Option(help="overrides server.host")] = None,
    port: Annotated[int | None, typer.Option(help="overrides server.port")] = None,
) -> None:
    """Run the OpenAI-compatible caching gateway."""
    from hitrate.config import ConfigError, load_config
    from hitrate.extras import MissingExtra, check_config

    try:
        cfg = load_config(config)
        check_config(cfg)
    except ConfigError as exc:
        _fail(f"config {config}: {exc}")
        return
    except MissingExtra as exc:
        _fail(f"config {config}: {exc}")
        return
    from hitrate.gateway.app import create_app
    from hitrate.serving import serve as run

    bind_host = host or cfg.server.host
    bind_port = port if port is not None else cfg.server.port
    models = ", ".join(m.name for m in cfg.models) or "none"
    cache = f"{cfg.cache.type}" if cfg.cache.enabled else "off"
    typer.echo(f"hitrate gateway on http://{bind_host}:{bind_port}  cache={cache}  models={models}")
    try:
        run(create_app(cfg), bind_host, bind_port, cfg.server)
    except OSError as exc:
        _fail(f"cannot listen on {bind_host}:{bind_port}: {exc.strerror or exc}")


@app.command()
def demo(
    latency_ms: Annotated[tuple[int, int], typer.Option(help="simulated upstream latency range")]
    = (300, 800),
) -> None:
    """See what hitrate does in 30 seconds: no network, no API key."""
    from hitrate.demo import run_demo

    run_demo(latency=(latency_ms[0] / 1000, latency_ms[1] / 1000))


# -- admin commands: talk to a running gateway's admin API ------------------------------

UrlOption = Annotated[str | None, typer.Option(
    "--url", help="gateway URL [env HITRATE_URL; else from --config; else http://127.0.0.1:4000]")]
KeyOption = Annotated[str | None, typer.Option(
    "--key", help="master key [env HITRATE_MASTER_KEY; else from --config]")]
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c",
                                                   help="read URL and master key from it")]


def _admin_target(url: str | None, key: str | None, config: Path | None) -> tuple[str, str | None]:
    cfg = None
    if config is not None:
        from hitrate.config import ConfigError, load_config

        try:
            cfg = load_config(config)
        except ConfigError as exc:
            _fail(f"config {config}: {exc}")
    url = url or os.environ.get("HITRATE_URL")
    if not url and cfg is not None:
        host = cfg.server.host if cfg.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
        url = f"http://{host}:{cfg.server.port}"
    key = key or os.environ.get("HITRATE_MASTER_KEY") or (cfg.master_key if cfg else None)
    return (url or "http://127.0.0.1:4000").rstrip("/"), key


def _admin_call(method: str, url: str, key: str | None, path: str) -> Any:
    import httpx

    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, url + path, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        from hitrate.redact import redact_text, redact_url

        _fail(f"cannot reach the gateway at {redact_url(url)}: {redact_text(str(exc))}")
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code >= 400:
        message = (payload.get("error") or {}).get("message") if isinstance(payload, dict) else None
        _fail(f"{method} {path}: HTTP {response.status_code}"
              + (f": {message}" if message else ""))
    return payload


def _duration(seconds: float) -> str:
    for limit, unit, div in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{seconds / div:.1f} {unit}"
    return f"{seconds / 86400:.1f} d"


@app.command()
def stats(url: UrlOption = None, key: KeyOption = None, config: ConfigOption = None,
          as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
          tenant: Annotated[str | None, typer.Option(help="one tenant's numbers (master "
                                                     "key; a tenant's key sees its own)")] = None
          ) -> None:
    """Cache statistics and savings from a running gateway (admin API)."""
    from urllib.parse import quote

    base, secret = _admin_target(url, key, config)
    path = "/cache/stats" + (f"?tenant={quote(tenant)}" if tenant else "")
    payload = _admin_call("GET", base, secret, path)
    if as_json:
        import json

        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    requests = payload["requests"]
    outcome = requests["by_outcome"]
    console.print(f"[bold]hitrate[/bold] at {base}"
                  + (f", tenant [bold]{payload['tenant']}[/bold]" if payload.get("tenant") else ""))
    summary = Table(show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("requests", f"{requests['total']:,}")
    for name in ("hit", "miss", "bypass", "error"):
        summary.add_row(f"  {name}", f"{outcome[name]:,}")
    summary.add_row("hit rate", f"{payload['hit_rate'] * 100:.1f}%")
    savings = payload.get("savings")
    if savings:
        summary.add_row("money saved", f"${savings['cost_usd']:.6f}")
        summary.add_row("time saved", _duration(savings["latency_seconds"]))
        summary.add_row("tokens saved", f"{savings['tokens']:,}")
        for purpose, row in (savings.get("spent") or {}).items():  # the semantic judge
            summary.add_row(f"spent ({purpose})", f"${row['cost_usd']:.6f}")
        if savings.get("spent"):
            summary.add_row("net saved", f"${savings['net_cost_usd']:.6f}")
    cache = payload.get("cache")
    backend = payload.get("backend")
    if cache and backend:
        state = "up" if backend["up"] else "FAILING"
        if backend.get("circuit_state"):
            state += f", circuit {backend['circuit_state']}"
        summary.add_row("backend", f"{backend['name']} ({state})")
        summary.add_row("entries", f"{cache['entries']:,}")
        summary.add_row("bytes", f"{cache['bytes']:,}")
    elif not payload.get("tenant"):
        summary.add_row("cache", "disabled")
    console.print(summary)
    for title, rows in (("model", payload.get("models")), ("namespace", payload.get("namespaces"))):
        if not rows:
            continue
        table = Table(title=f"top {title}s", title_justify="left")
        for column in (title, "hits", "tokens saved", "saved (USD)"):
            table.add_column(column, justify="left" if column == title else "right")
        for row in rows:
            table.add_row(row["name"], f"{row['hits']:,}",
                          f"{row['prompt_tokens'] + row['completion_tokens']:,}",
                          f"{row['cost_usd']:.6f}")
        console.print(table)


@app.command()
def flush(url: UrlOption = None, key: KeyOption = None, config: ConfigOption = None,
          namespace: Annotated[str | None, typer.Option(help="only this namespace")] = None,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False) -> None:
    """Delete cached entries (only hitrate's own keys; never the whole backend)."""
    base, secret = _admin_target(url, key, config)
    what = f"namespace {namespace!r}" if namespace else "every hitrate entry"
    if not yes and not typer.confirm(f"Delete {what} from the cache at {base}?"):
        raise typer.Exit(1)
    from urllib.parse import quote

    path = f"/cache/namespaces/{quote(namespace, safe='')}" if namespace else "/cache/flush"
    payload = _admin_call("DELETE" if namespace else "POST", base, secret, path)
    typer.echo(f"deleted {payload['deleted']} entries ({what})")


costs_app = typer.Typer(no_args_is_help=True, help="Model prices and context windows.")
app.add_typer(costs_app, name="costs")

from hitrate.kv.cli import app as kv_app  # noqa: E402 - typer only; torch loads on use

app.add_typer(kv_app, name="kv")


@costs_app.command("show")
def costs_show(
    model: Annotated[str, typer.Argument(help="model name, e.g. gpt-4o-mini or openai/gpt-4o")],
    config: ConfigOption = None,
) -> None:
    """What the price map knows about MODEL (bundled snapshot, last good refresh, config)."""
    from hitrate.costs.prices import PriceMap, candidate_names

    prices = PriceMap()
    if config is not None:
        from hitrate.config import ConfigError, load_config
        from hitrate.gateway.state import build_prices

        try:
            cfg = load_config(config)
        except ConfigError as exc:
            _fail(f"config {config}: {exc}")
            return
        prices = build_prices(cfg)
        if cfg.costs.refresh is not None:
            from hitrate.costs.refresh import PriceRefresher

            PriceRefresher(prices, cfg.costs.refresh.source, cfg.costs.refresh.cache_file
                           ).load_cached()
    price = prices.get(model)
    if price is None:
        close = sorted(n for n in prices.names()
                       if any(c in n or n in c for c in candidate_names(model)))[:8]
        _fail(f"no price known for {model!r}" + (f"; similar: {', '.join(close)}" if close
                                                    else ""))
        return
    base = prices.base
    per_m = 1_000_000
    typer.echo(f"model          {price.model}" + (f"  (matched {model!r})"
                                                   if price.model != model else ""))
    if price.provider:
        typer.echo(f"provider       {price.provider}")
    typer.echo(f"input          ${price.input_cost_per_token * per_m:g} / 1M tokens")
    typer.echo(f"output         ${price.output_cost_per_token * per_m:g} / 1M tokens")
    if price.cached_input_cost_per_token is not None:
        typer.echo(f"cached input   ${price.cached_input_cost_per_token * per_m:g} / 1M tokens")
    if price.max_input_tokens:
        typer.echo(f"context        {price.max_input_tokens:,} tokens in")
    if price.max_output_tokens:
        typer.echo(f"max output     {price.max_output_tokens:,} tokens")
    typer.echo(f"price map      {base.source}" + (f", {base.updated}" if base.updated else ""))


@app.command()
def version() -> None:
    """Print the version."""
    from hitrate import __version__

    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
