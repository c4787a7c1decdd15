"""The commands over what runs left behind: ``compare``, ``ledger``, ``sync`` and the MLflow ``server``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from paretrain.cli.options import format_option, workspace
from paretrain.console import Output
from paretrain.run_output import show_compare, show_ledger

__all__ = ["compare", "ledger", "server", "sync"]


@click.command()
@click.option("--experiment", help="MLflow experiment (default: the only one, or mnist1d-demo).")
@click.option("--tracking-uri", help="MLflow tracking URI.")
@format_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("compare.png"),
    show_default=True,
    help="Where to write the plot.",
)
def compare(experiment: str | None, tracking_uri: str | None, fmt: str, output: Path) -> None:
    """Predicted against realized cost, wall time and target metric of an experiment's runs."""
    from paretrain.runtime.files import check_writable
    from paretrain.runtime.tracking.client import default_uri
    from paretrain.runtime.tracking.compare import check_store, compare_rows, latest_plan_run, log_plot
    from paretrain.runtime.tracking.plots import plot_compare

    uri = default_uri(tracking_uri)
    check_writable(output, "-o")
    check_store(uri)
    exp, rows = compare_rows(uri, experiment)
    with Output(fmt) as ui:
        show_compare(ui, exp, rows)
        png = plot_compare(rows, output, title=f"{exp}: predicted against realized")
        plan_run = latest_plan_run(uri, exp)
        logged = plan_run is not None and log_plot(uri, plan_run, str(png))
        ui.put("plot", str(png))
        ui.line(
            f"{len(rows)} run{'s' if len(rows) != 1 else ''} in experiment '{exp}' at {uri}; plot {png}"
            + (f" (also an artifact of plan run {plan_run})" if logged else "")
        )


@click.command()
@click.option(
    "--period", type=click.Choice(["all", "day", "week", "month"]), default="all", show_default=True
)
@format_option
@click.pass_context
def ledger(ctx: click.Context, period: str, fmt: str) -> None:
    """Spend by run, stage and kind, from the ledgers under .paretrain/ledger."""
    from paretrain.runtime.money.report import ledger_report

    rows, total = ledger_report(workspace(ctx).ledgers, period)
    with Output(fmt) as ui:
        show_ledger(ui, rows, total, period)


@click.command()
@click.option("--tracking-uri", help="Replay into this MLflow instead of each record's own.")
@click.pass_context
def sync(ctx: click.Context, tracking_uri: str | None) -> None:
    """Replay tracking records spooled while MLflow was away."""
    from paretrain.runtime.tracking.client import sync_spool

    done, left = sync_spool(workspace(ctx).spool, tracking_uri)
    click.echo(f"replayed {done} records; {left} left in the spool")
    if left:
        ctx.exit(1)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--backend-store-uri", default="sqlite:///mlflow.db", show_default=True)
@click.option("--artifacts", default="./mlartifacts", show_default=True, help="Artifacts folder.")
def server(host: str, port: int, backend_store_uri: str, artifacts: str) -> None:
    """Start the MLflow tracking server (mlflow/server.sh does the same).

    MLflow's job runner (eight helper processes that run GenAI evaluation jobs, which paretrain
    never submits) stays off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION is set: the server then
    starts on half the CPU, and no idle helpers poll beside the runs it tracks."""
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    args = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
    ]
    click.echo(
        f"MLflow server on http://{host}:{port} (store {backend_store_uri}, artifacts {artifacts})", err=True
    )
    os.execv(sys.executable, args)
