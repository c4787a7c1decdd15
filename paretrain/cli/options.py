"""The options several commands share (output format, tracking) and the workspace they act in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from paretrain.console import FORMATS
from paretrain.runtime.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])


def format_option(fn: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people (plain when piped), json for scripts (stdout holds one JSON document).",
    )(fn)


def tracking_options(fn: F) -> F:
    fn = click.option("--no-track", is_flag=True, help="Do not log to MLflow.")(fn)
    return click.option(
        "--tracking-uri",
        help="MLflow tracking URI (default: the spec's, $MLFLOW_TRACKING_URI, sqlite:///mlflow.db).",
    )(fn)


def workspace(ctx: click.Context) -> Workspace:
    """The workspace under the root group's ``--workdir``."""
    return Workspace(Path(ctx.obj["workdir"]))


def data_workspace(ctx: click.Context) -> Workspace:
    """The workspace of a command that loads a workload's data (``profile``, ``plan``,
    ``search``, ``run``): a ``--workdir`` that cannot hold ``.paretrain/`` and a bad
    ``PARETRAIN_CACHE_DIR`` are bad input there, before anything runs."""
    from paretrain.runtime.files import check_writable

    ws = workspace(ctx)
    check_writable(ws.root, "--workdir", folder=True)  # .paretrain/ is made there
    ws.check_cache()
    return ws
