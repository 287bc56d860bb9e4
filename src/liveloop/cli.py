"""The `liveloop` command: one command per stage, each a thin wrapper over a plain function in src/liveloop.

dvc.yaml stages and Prefect flows call the same functions, so there is exactly one implementation per stage.
Heavy imports happen inside the commands so `liveloop --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from liveloop.config import Config, ConfigError
from liveloop.workspace import Workspace, open_workspace

app = typer.Typer(help="liveloop: continuously learning recommender for live-stream commerce.", no_args_is_help=True)

PARAMS = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read.")


def _setup(params: Path) -> tuple[Config, Workspace]:
    """Load config (clear error on a bad value) and point every tool's state inside the workspace."""
    try:
        return open_workspace(params)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


@app.command("show-config")
def show_config(params: Path = PARAMS) -> None:
    """Print the resolved configuration (after validation) as YAML."""
    import yaml

    cfg, _ = _setup(params)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


if __name__ == "__main__":  # pragma: no cover
    app()
