"""`hitrate serve | demo | version`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

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

    try:
        cfg = load_config(config)
    except ConfigError as exc:
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
        run(create_app(cfg), bind_host, bind_port)
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
