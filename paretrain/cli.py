"""paretrain's command line: a thin face over the planner and the runtime.

Exit codes: 0 done; 2 bad input (one line on stderr, nothing written); 3 infeasible plan or a
run stopped at its budget; 1 an internal fault (``--verbose`` shows the traceback).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from paretrain.console import FORMATS, Output
from paretrain.output import (
    show_compare,
    show_fits,
    show_ledger,
    show_plan,
    show_plan_written,
    show_profile,
    show_result,
    show_running,
    show_search,
    show_tracking,
)
from paretrain.planner.errors import InputError, StopError, UserError
from paretrain.worker import worker as worker_command

__all__ = ["cli", "main"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Maps paretrain's errors to exit codes and one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except UserError as err:
            _fail(ctx, err, 2)
        except StopError as err:
            _fail(ctx, err, 3)
        except KeyboardInterrupt:
            click.echo("paretrain: interrupted", err=True)
            ctx.exit(130)
        except Exception as err:
            if _verbose(ctx):
                traceback.print_exc()
            click.echo(
                f"paretrain: internal error: {type(err).__name__}: {err} "
                "(run with --verbose for the traceback)",
                err=True,
            )
            ctx.exit(1)


def _verbose(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("verbose")) or bool(os.environ.get("PARETRAIN_VERBOSE"))


def _fail(ctx: click.Context, err: Exception, code: int) -> None:
    if _verbose(ctx):
        traceback.print_exc()
    message = " ".join(str(err).split())
    click.echo(click.style("paretrain:", fg="red", bold=True) + f" {message}", err=True)  # plain when piped
    ctx.exit(code)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder holding .paretrain/ (profiles, ledgers, runs).",
)
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="paretrain")
@click.pass_context
def cli(ctx: click.Context, workdir: Path, verbose: bool) -> None:
    """Plan and run model training under a money budget.

    \b
      paretrain init                      write the MNIST-1D example spec
      paretrain plan mnist1d.yaml -o plan.json
      paretrain run plan.json --candidate knee
      paretrain compare
    """
    ctx.obj = {"workdir": workdir}


def _ws(ctx: click.Context) -> Any:
    from paretrain.runtime.pipeline import Workspace

    return Workspace(Path(ctx.obj["workdir"]))


# -- init / spec-schema ---------------------------------------------------------------------

_EXAMPLES = {
    "mnist1d": ("mnist1d.yaml", "MNIST-1D classifiers on this machine's CPU; target val_accuracy"),
    "stdlib-lm": (
        "stdlib_lm.yaml",
        "a byte-level GPT on this Python's standard-library source; target val_bpb (minimized)",
    ),
}


@cli.command(
    epilog="\b\nExamples:\n"
    + "\n".join(f"  {name:<10} {file:<15} {what}" for name, (file, what) in _EXAMPLES.items())
)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option(
    "--example",
    type=click.Choice(list(_EXAMPLES)),
    default="mnist1d",
    show_default=True,
    help="Which example spec to write (listed below).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing spec file of that name.")
def init(directory: Path, example: str, force: bool) -> None:
    """Write an example spec to DIRECTORY (MNIST-1D by default: DIRECTORY/mnist1d.yaml)."""
    from importlib import resources

    name = _EXAMPLES[example][0]
    target = directory / name
    if target.exists() and not force:
        raise InputError(
            f"{target}: already exists. To fix: pass --force to overwrite it, or choose another directory"
        )
    text = resources.files("paretrain").joinpath(f"examples/{name}").read_text(encoding="utf-8")
    from paretrain.runtime.files import atomic_write_text

    atomic_write_text(target, text)
    click.echo(f"wrote {target}\nnext: paretrain plan {target} -o plan.json")


@cli.command("spec-schema")
def spec_schema() -> None:
    """Print the spec's JSON Schema."""
    from paretrain.planner.inputs.spec_parse import spec_json_schema

    click.echo(json.dumps(spec_json_schema(), indent=2))


# -- profile / plan / search --------------------------------------------------------------


def _format_option(fn: Any) -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people (plain when piped), json for scripts (stdout holds one JSON document).",
    )(fn)


def _tracking_options(fn: Any) -> Any:
    fn = click.option("--no-track", is_flag=True, help="Do not log to MLflow.")(fn)
    return click.option(
        "--tracking-uri",
        help="MLflow tracking URI (default: the spec's, $MLFLOW_TRACKING_URI, sqlite:///mlflow.db).",
    )(fn)


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the profile here (to bring to another machine's spec).",
)
@click.option("--force", is_flag=True, help="Measure again even if a cached profile matches.")
@_format_option
@click.pass_context
def profile(ctx: click.Context, spec_path: Path, output: Path | None, force: bool, fmt: str) -> None:
    """Measure the candidate hardware here; write a profile file."""
    from paretrain.runtime.files import write_profile
    from paretrain.runtime.pipeline import check_inputs, get_profile
    from paretrain.runtime.spec_files import read_spec

    spec = read_spec(spec_path)
    offers = check_inputs(spec)
    ws = _ws(ctx)
    with Output(fmt) as ui:
        with ui.progress("profiling") as bar:
            prof, reused = get_profile(spec, ws, list(spec.configs), offers, progress=bar, force=force)
        if output:
            write_profile(prof, output)
        show_profile(ui, prof, reused, output or ws.profiles / f"{prof.key}.json")


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("plan.json"),
    show_default=True,
    help="Where to write the plan; pareto.png goes beside it.",
)
@_tracking_options
@click.option("--reprofile", is_flag=True, help="Measure again even if a cached profile matches.")
@_format_option
@click.pass_context
def plan(
    ctx: click.Context,
    spec_path: Path,
    output: Path,
    tracking_uri: str | None,
    no_track: bool,
    reprofile: bool,
    fmt: str,
) -> None:
    """Profile (cached), solve the MILP, and write the Pareto set of schedules."""
    from paretrain.planner.plan.plan_file import plan_to_json
    from paretrain.runtime.files import atomic_write_text
    from paretrain.runtime.pipeline import check_inputs, plan_spec, search_spec
    from paretrain.runtime.spec_files import read_spec
    from paretrain.runtime.tracking.plan_log import log_plan
    from paretrain.runtime.tracking.plots import plot_pareto
    from paretrain.runtime.tracking.session import open_session, parent_run

    spec = read_spec(spec_path)
    ws = _ws(ctx)
    check_inputs(spec, search=spec.search.trials > 0)  # bad input: exit 2 before anything is spent or logged
    session = open_session(tracking_uri, spec.tracking.uri, spec.experiment, ws.spool, enabled=not no_track)
    with Output(fmt) as ui:
        with parent_run(session, "plan", kind="plan") as parent:
            found: list[Any] = []
            if spec.search.trials > 0:
                with ui.progress("search") as bar:
                    result = search_spec(spec, ws, tracker=session.tracker, parent=parent, progress=bar)
                show_search(ui, result)
                found = [c for c, _ in result.front[: spec.search.front]]
            with ui.progress("profiling") as bar:
                the_plan, prof, reused = plan_spec(
                    spec, ws, progress=bar, force_profile=reprofile, search_configs=found
                )
            show_profile(ui, prof, reused)
            show_fits(ui, the_plan)
            atomic_write_text(output, plan_to_json(the_plan))
            png = plot_pareto(the_plan, output.parent / "pareto.png")
            show_plan(ui, the_plan)
            show_plan_written(ui, the_plan, output, png)
            log_plan(session.tracker, parent, spec, the_plan, artifacts=(spec_path, output, png))
        show_tracking(ui, session.close())


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "--storage", help="Optuna storage: sqlite:///FILE (default: the spec's), journal:FILE, or an RDB URL."
)
@click.option("--trials", type=int, help="Total trials the study should hold (default: search.trials).")
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes on this machine; with a postgresql:// storage, workers on other "
    "machines join the same study and share its one envelope.",
)
@_tracking_options
@_format_option
@click.pass_context
def search(
    ctx: click.Context,
    spec_path: Path,
    storage: str | None,
    trials: int | None,
    workers: int,
    tracking_uri: str | None,
    no_track: bool,
    fmt: str,
) -> None:
    """Optuna architecture and hyperparameter search under the search envelope (resumable)."""
    from paretrain.runtime.pipeline import check_storage, check_workload, search_spec
    from paretrain.runtime.spec_files import read_spec
    from paretrain.runtime.tracking.session import open_session, parent_run
    from paretrain.runtime.trials.storage import check_workers

    check_workers(workers)
    spec = read_spec(spec_path)
    if trials is not None and trials < 1:
        raise InputError(f"--trials must be >= 1; got {trials}. To fix: pass a positive number")
    check_workload(spec)
    check_storage(storage or spec.search.storage, "--storage" if storage else "search.storage")
    ws = _ws(ctx)
    session = open_session(tracking_uri, spec.tracking.uri, spec.experiment, ws.spool, enabled=not no_track)
    with Output(fmt) as ui:
        with (
            parent_run(
                session,
                f"search-{spec.search.study or spec.name}",
                kind="search",
                params={
                    "sampler": spec.search.sampler,
                    "seed": spec.search.seed,
                    "envelope_usd": spec.budget.search_usd,
                },
            ) as parent,
            ui.progress("search") as bar,
        ):
            result = search_spec(
                spec,
                ws,
                storage=storage,
                trials=trials or max(spec.search.trials, 1),
                tracker=session.tracker,
                parent=parent,
                progress=bar,
                workers=workers,
            )
        show_search(ui, result)
        show_tracking(ui, session.close())


# -- run ---------------------------------------------------------------------------------------


@cli.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(path_type=Path))
@click.option(
    "--candidate",
    default="knee",
    show_default=True,
    help="knee, cheapest, fastest, accurate (the highest level), or a candidate id from the plan.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue this candidate's last run: nothing to do if it finished, a new run if there is none.",
)
@click.option("--approve", is_flag=True, help="Run a candidate above budget.approval_above_usd.")
@click.option(
    "--prices",
    "prices_path",
    type=click.Path(path_type=Path),
    help="A price trace CSV (t_s, hardware, price_usd_per_h, available).",
)
@_tracking_options
@_format_option
@click.pass_context
def run(
    ctx: click.Context,
    plan_path: Path,
    candidate: str,
    resume: bool,
    approve: bool,
    prices_path: Path | None,
    tracking_uri: str | None,
    no_track: bool,
    fmt: str,
) -> None:
    """Train a plan's candidate for real, within its budget."""
    from paretrain.planner.plan.approval import check_approval
    from paretrain.run_inputs import choose_resume, plan_spec_of, read_plan, read_prices
    from paretrain.runtime.train.elastic import Settings

    Settings.from_env()  # a bad PARETRAIN_* setting is input: exit 2 before anything runs
    the_plan = read_plan(plan_path)
    cand = the_plan.candidate(candidate)
    spec = plan_spec_of(the_plan)
    prices = read_prices(prices_path, the_plan)
    ws = _ws(ctx)
    choice = choose_resume(ws.root, the_plan, cand) if resume else None
    with Output(fmt) as ui:
        if choice is not None and choice.finished:
            ui.put(
                "run",
                {"run_id": choice.run_id, "candidate": cand.id, "status": "target", "already_finished": True},
            )
            ui.line(choice.message)
            return
        check_approval(spec.budget, cand, approve)
        _execute(
            ui,
            the_plan,
            cand,
            spec,
            ws,
            prices=prices,
            plan_path=plan_path,
            choice=choice,
            tracking=(tracking_uri, not no_track),
        )


def _execute(
    ui: Output,
    the_plan: Any,
    cand: Any,
    spec: Any,
    ws: Any,
    *,
    prices: Any,
    plan_path: Path,
    choice: Any,
    tracking: tuple[str | None, bool],
) -> None:
    from paretrain.runtime.run.executor import Executor
    from paretrain.runtime.tracking.session import open_session

    run_id = choice.run_id if choice is not None else None
    session = open_session(tracking[0], spec.tracking.uri, spec.experiment, ws.spool, enabled=tracking[1])
    show_running(ui, cand, choice.message if choice is not None else "", the_plan.metric.name)
    ex = Executor(
        the_plan,
        cand,
        workdir=ws.root,
        tracker=session.tracker,
        run_id=run_id,
        resume=run_id is not None,
        prices=prices,
        plan_path=plan_path,
        log=ui.log,
    )
    result = None
    try:
        result = ex.run()
    except StopError as err:
        result = getattr(err, "result", None)
        raise
    finally:
        if result is not None:
            show_result(ui, result)
        report = session.close(result.tracking_run if result is not None else None)
        if result is not None and result.tracking_run:
            show_tracking(ui, report)


# -- compare / ledger / sync / server ---------------------------------------------------------


@cli.command()
@click.option("--experiment", help="MLflow experiment (default: the only one, or mnist1d-demo).")
@click.option("--tracking-uri", help="MLflow tracking URI.")
@_format_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("compare.png"),
    show_default=True,
    help="Where to write the plot.",
)
def compare(experiment: str | None, tracking_uri: str | None, fmt: str, output: Path) -> None:
    """Predicted against realized cost, wall time and accuracy of an experiment's runs."""
    from paretrain.runtime.tracking.client import default_uri
    from paretrain.runtime.tracking.compare import compare_rows, latest_plan_run, log_plot
    from paretrain.runtime.tracking.plots import plot_compare

    uri = default_uri(tracking_uri)
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


@cli.command()
@click.option(
    "--period", type=click.Choice(["all", "day", "week", "month"]), default="all", show_default=True
)
@_format_option
@click.pass_context
def ledger(ctx: click.Context, period: str, fmt: str) -> None:
    """Spend by run, stage and kind, from the ledgers under .paretrain/ledger."""
    from paretrain.runtime.money.report import ledger_report

    rows, total = ledger_report(_ws(ctx).ledgers, period)
    with Output(fmt) as ui:
        show_ledger(ui, rows, total, period)


@cli.command()
@click.option("--tracking-uri", help="Replay into this MLflow instead of each record's own.")
@click.pass_context
def sync(ctx: click.Context, tracking_uri: str | None) -> None:
    """Replay tracking records spooled while MLflow was away."""
    from paretrain.runtime.tracking.client import sync_spool

    done, left = sync_spool(_ws(ctx).spool, tracking_uri)
    click.echo(f"replayed {done} records; {left} left in the spool")
    if left:
        ctx.exit(1)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--backend-store-uri", default="sqlite:///mlflow.db", show_default=True)
@click.option("--artifacts", default="./mlartifacts", show_default=True, help="Artifacts folder.")
def server(host: str, port: int, backend_store_uri: str, artifacts: str) -> None:
    """Start the MLflow tracking server (mlflow/server.sh does the same)."""
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


cli.add_command(worker_command)


def main() -> None:
    cli(prog_name="paretrain")


if __name__ == "__main__":  # pragma: no cover
    main()
