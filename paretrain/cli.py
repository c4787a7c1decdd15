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

from paretrain.output import Bar, print_fits, print_plan, print_result, print_search, print_tracking, table
from planner.errors import ApprovalRequired, InputError, StopError, UserError

__all__ = ["main", "cli"]

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
        except Exception as err:  # noqa: BLE001 - the last line of defence
            if _verbose(ctx):
                traceback.print_exc()
            click.echo(f"paretrain: internal error: {type(err).__name__}: {err} "
                       "(run with --verbose for the traceback)", err=True)
            ctx.exit(1)


def _verbose(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("verbose")) or bool(os.environ.get("PARETRAIN_VERBOSE"))


def _fail(ctx: click.Context, err: Exception, code: int) -> None:
    if _verbose(ctx):
        traceback.print_exc()
    message = " ".join(str(err).split())
    click.echo(f"paretrain: {message}", err=True)
    ctx.exit(code)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder holding .paretrain/ (profiles, ledgers, runs).")
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
    from runtime.pipeline import Workspace

    return Workspace(Path(ctx.obj["workdir"]))


# -- init / spec-schema ---------------------------------------------------------------------

@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option("--force", is_flag=True, help="Overwrite an existing mnist1d.yaml.")
def init(directory: Path, force: bool) -> None:
    """Write the example spec (MNIST-1D on this machine's CPU) to DIRECTORY/mnist1d.yaml."""
    from importlib import resources

    target = directory / "mnist1d.yaml"
    if target.exists() and not force:
        raise InputError(f"{target}: already exists. To fix: pass --force to overwrite it, or choose "
                         "another directory")
    text = resources.files("paretrain").joinpath("examples/mnist1d.yaml").read_text(encoding="utf-8")
    from runtime.files import atomic_write_text

    atomic_write_text(target, text)
    click.echo(f"wrote {target}\nnext: paretrain plan {target} -o plan.json")


@cli.command("spec-schema")
def spec_schema() -> None:
    """Print the spec's JSON Schema."""
    from planner.spec import spec_json_schema

    click.echo(json.dumps(spec_json_schema(), indent=2))


# -- profile / plan -------------------------------------------------------------------------

@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the profile here (to bring to another machine's spec).")
@click.option("--force", is_flag=True, help="Measure again even if a cached profile matches.")
@click.pass_context
def profile(ctx: click.Context, spec_path: Path, output: Path | None, force: bool) -> None:
    """Measure the candidate hardware here; write a profile file."""
    from runtime.files import read_spec, write_profile
    from runtime.pipeline import get_profile, offers_for

    spec = read_spec(spec_path)
    offers = offers_for(spec)
    prof, reused = get_profile(spec, _ws(ctx), list(spec.configs), offers, progress=Bar("profiling"),
                               force=force)
    if output:
        write_profile(prof, output)
    where = output or _ws(ctx).profiles / f"{prof.key}.json"
    click.echo(f"profile {prof.key} ({'reused' if reused else 'measured'}, ${prof.spend_usd:.6f}): {where}")


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("plan.json"),
              show_default=True, help="Where to write the plan; pareto.png goes beside it.")
@click.option("--tracking-uri", help="MLflow tracking URI (default: spec, $MLFLOW_TRACKING_URI, "
                                     "sqlite:///mlflow.db).")
@click.option("--no-track", is_flag=True, help="Do not log to MLflow.")
@click.option("--reprofile", is_flag=True, help="Measure again even if a cached profile matches.")
@click.pass_context
def plan(ctx: click.Context, spec_path: Path, output: Path, tracking_uri: str | None, no_track: bool,
         reprofile: bool) -> None:
    """Profile (cached), solve the MILP, and write the Pareto set of schedules."""
    from planner.plan import plan_to_json
    from runtime.files import atomic_write_text, read_spec
    from runtime.pipeline import offers_for, plan_spec
    from runtime.tracking.plots import plot_pareto

    spec = read_spec(spec_path)
    ws = _ws(ctx)
    offers_for(spec)  # bad hardware in the spec: exit 2 before anything is measured or logged
    tr = parent = None
    uri = ""
    if not no_track:
        from runtime.tracking.client import Tracker, default_uri, git_commit

        uri = default_uri(tracking_uri or spec.tracking.uri)
        tr = Tracker(uri, spec.experiment, ws.spool)
        tags = {"paretrain.kind": "plan", "mlflow.source.git.commit": git_commit()}
        if os.environ.get("MLFLOW_RUN_ID"):  # started by `mlflow run mlflow -e plan`: link that run
            tags["paretrain.project_run"] = os.environ["MLFLOW_RUN_ID"]
        parent = tr.start_run("plan", tags=tags)
    found: list[Any] = []
    if spec.search.trials > 0:
        from runtime.pipeline import search_spec

        result = search_spec(spec, ws, tracker=tr, parent=parent, progress=Bar("search"))
        print_search(result)
        found = [c for c, _ in result.front[: spec.search.front]]
    try:
        the_plan, prof, reused = plan_spec(spec, ws, progress=Bar("profiling"), force_profile=reprofile,
                                           search_configs=found)
    except BaseException:
        if tr is not None:
            tr.end_run(parent, "FAILED")
            tr.close()
        raise
    click.echo(f"profile {prof.key}: {'reused' if reused else 'measured'} (${prof.spend_usd:.6f})")
    print_fits(the_plan)
    atomic_write_text(output, plan_to_json(the_plan))
    png = plot_pareto(the_plan, output.parent / "pareto.png")
    print_plan(the_plan)
    click.echo(f"plan {the_plan.fingerprint} written to {output}; plot {png}")
    if tr is not None:
        tr.set_tags(parent, {"paretrain.plan_fingerprint": the_plan.fingerprint, "mlflow.runName":
                             f"plan-{the_plan.fingerprint}"})
        tr.log_params(parent, {
            "spec": spec.name, "spec_digest": spec.digest, "fingerprint": the_plan.fingerprint,
            "solver": the_plan.solver.get("name"), "solver_status": the_plan.solver.get("status"),
            "candidates": len(the_plan.candidates), "chosen": the_plan.chosen,
            "budget_train_usd": spec.budget.train_usd, "deadline_s": spec.deadline_s})
        for c in the_plan.candidates:
            child = tr.start_run(f"{c.id}-{c.config_id}", parent=parent, tags={
                "paretrain.kind": "candidate", "paretrain.plan_fingerprint": the_plan.fingerprint,
                "paretrain.candidate": c.id, "paretrain.config": c.config_id},
                params={"config": c.config_id, "level": c.accuracy,
                        **{f"stage{s.index}": f"{s.hardware} {s.precision} b={s.batch_size} "
                                              f"n={s.workers} samples={s.samples}" for s in c.stages}})
            tr.log_metrics(child, {"predicted_cost_usd": c.cost_usd, "predicted_wall_s": c.wall_s,
                                   "predicted_accuracy": c.accuracy})
            tr.end_run(child)
        tr.log_artifact(parent, spec_path)
        tr.log_artifact(parent, output)
        tr.log_artifact(parent, png)
        tr.end_run(parent)
        ok = tr.close()
        print_tracking(tr, parent, uri, spec.experiment, ok)


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--storage", help="Optuna storage: sqlite:///FILE (default: the spec's), journal:FILE, or an RDB URL.")
@click.option("--trials", type=int, help="Total trials the study should hold (default: search.trials).")
@click.option("--tracking-uri", help="MLflow tracking URI.")
@click.option("--no-track", is_flag=True, help="Do not log to MLflow.")
@click.pass_context
def search(ctx: click.Context, spec_path: Path, storage: str | None, trials: int | None,
           tracking_uri: str | None, no_track: bool) -> None:
    """Optuna architecture and hyperparameter search under the search envelope (resumable)."""
    from runtime.files import read_spec
    from runtime.pipeline import search_spec

    spec = read_spec(spec_path)
    if trials is not None and trials < 1:
        raise InputError(f"--trials must be >= 1; got {trials}. To fix: pass a positive number")
    ws = _ws(ctx)
    tr = parent = None
    uri = ""
    if not no_track:
        from runtime.tracking.client import Tracker, default_uri, git_commit

        uri = default_uri(tracking_uri or spec.tracking.uri)
        tr = Tracker(uri, spec.experiment, ws.spool)
        parent = tr.start_run(f"search-{spec.search.study or spec.name}", tags={
            "paretrain.kind": "search", "mlflow.source.git.commit": git_commit()},
            params={"sampler": spec.search.sampler, "seed": spec.search.seed,
                    "envelope_usd": spec.budget.search_usd})
    try:
        result = search_spec(spec, ws, storage=storage, trials=trials or max(spec.search.trials, 1),
                             tracker=tr, parent=parent, progress=Bar("search"))
    finally:
        if tr is not None:
            tr.end_run(parent)
    print_search(result)
    if tr is not None:
        ok = tr.close()
        print_tracking(tr, parent, uri, spec.experiment, ok)


# -- run ---------------------------------------------------------------------------------------

@cli.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(path_type=Path))
@click.option("--candidate", default="knee", show_default=True,
              help="knee, cheapest, fastest, or a candidate id from the plan.")
@click.option("--resume", is_flag=True, help="Continue the last unfinished run of this candidate.")
@click.option("--approve", is_flag=True, help="Run a candidate above budget.approval_above_usd.")
@click.option("--prices", "prices_path", type=click.Path(path_type=Path),
              help="A price trace CSV (t_s, hardware, price_usd_per_h, available).")
@click.option("--tracking-uri", help="MLflow tracking URI.")
@click.option("--no-track", is_flag=True, help="Do not log to MLflow.")
@click.pass_context
def run(ctx: click.Context, plan_path: Path, candidate: str, resume: bool, approve: bool,
        prices_path: Path | None, tracking_uri: str | None, no_track: bool) -> None:
    """Train a plan's candidate for real, within its budget."""
    from planner.plan import plan_from_json
    from runtime.run.executor import Executor, find_resumable
    from runtime.files import read_text

    the_plan = plan_from_json(read_text(plan_path, "plan", "write one with 'paretrain plan SPEC -o PLAN'"),
                              str(plan_path))
    cand = the_plan.candidate(candidate)
    spec = the_plan.spec
    approval = spec["budget"].get("approval_above_usd")
    if approval is not None and cand.cost_usd > approval and not approve:
        raise ApprovalRequired(f"candidate {cand.id} is predicted to cost ${cand.cost_usd:.6g}, above "
                               f"budget.approval_above_usd ${approval:.6g}. To fix: pass --approve to run it")
    prices = None
    if prices_path is not None:
        from runtime.money.prices import TracePrices, parse_trace

        base = {o.id: o.price_usd_per_h for o in the_plan.offers}
        rows = parse_trace(read_text(prices_path, "price trace", "give a CSV price trace"), str(prices_path), base)
        prices = TracePrices(rows, base)
    ws = _ws(ctx)
    run_id = None
    if resume:
        run_id = find_resumable(ws.root, the_plan.fingerprint, cand.id)
        if run_id is None:
            raise InputError(f"--resume: no unfinished run of candidate {cand.id} of plan "
                             f"{the_plan.fingerprint} in {ws.state}. To fix: run without --resume")
    tracker = None
    uri = experiment = ""
    if not no_track:
        from runtime.tracking.client import Tracker, default_uri

        uri = default_uri(tracking_uri or spec["tracking"].get("uri"))
        experiment = spec["tracking"].get("experiment") or spec["name"]
        tracker = Tracker(uri, experiment, ws.spool)
    click.echo(f"running {cand.id} ({cand.config_id} to val_accuracy {cand.accuracy:g}): "
               + " -> ".join(f"{s.hardware} b{s.batch_size} x{s.samples}" for s in cand.stages))
    ex = Executor(the_plan, cand, workdir=ws.root, tracker=tracker, run_id=run_id, resume=resume,
                  prices=prices, plan_path=plan_path, log=lambda m: click.echo(m, err=True))
    result = None
    try:
        result = ex.run()
    except StopError as err:
        result = getattr(err, "result", None)
        raise
    finally:
        if result is not None:
            print_result(result)
        if tracker is not None:
            ok = tracker.close()
            if result is not None and result.tracking_run:
                print_tracking(tracker, result.tracking_run, uri, experiment, ok)


# -- compare / ledger / sync / server ---------------------------------------------------------

@cli.command()
@click.option("--experiment", help="MLflow experiment (default: the only one, or mnist1d-demo).")
@click.option("--tracking-uri", help="MLflow tracking URI.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("compare.png"),
              show_default=True, help="Where to write the plot.")
def compare(experiment: str | None, tracking_uri: str | None, fmt: str, output: Path) -> None:
    """Predicted against realized cost, wall time and accuracy of an experiment's runs."""
    from runtime.tracking.compare import compare_rows
    from runtime.tracking.plots import plot_compare
    from runtime.tracking.client import default_uri

    uri = default_uri(tracking_uri)
    exp, rows = compare_rows(uri, experiment)
    if fmt == "json":
        click.echo(json.dumps({"experiment": exp, "runs": rows}, indent=1))
    else:
        rows_out = [[r["candidate"], r["run"][:8], r["status"],
                  f"{r['predicted_cost_usd']:.6f}", f"{r['cost_usd']:.6f}", r["cost_err"],
                  f"{r['predicted_wall_s']:.1f}", f"{r['wall_s']:.1f}", r["wall_err"],
                  f"{r['predicted_accuracy']:.3f}", f"{r['val_accuracy']:.3f}",
                  "yes" if r["on_front"] else "no"] for r in rows]
        table(["candidate", "run", "status", "pred_cost", "cost", "err", "pred_wall", "wall", "err",
               "pred_acc", "acc", "front"], rows_out)
    png = plot_compare(rows, output, title=f"{exp}: predicted against realized")
    from runtime.tracking.compare import latest_plan_run, log_plot

    plan_run = latest_plan_run(uri, exp)
    logged = plan_run is not None and log_plot(uri, plan_run, str(png))
    if fmt == "table":
        click.echo(f"{len(rows)} run{'s' if len(rows) != 1 else ''} in experiment '{exp}' at {uri}; plot {png}"
                   + (f" (also an artifact of plan run {plan_run})" if logged else ""))


@cli.command()
@click.option("--period", type=click.Choice(["all", "day", "week", "month"]), default="all", show_default=True)
@click.pass_context
def ledger(ctx: click.Context, period: str) -> None:
    """Spend by run, stage and kind, from the ledgers under .paretrain/ledger."""
    from runtime.money.report import ledger_report

    rows, total = ledger_report(_ws(ctx).ledgers, period)
    table(["run", "stage", "kind", "usd", "seconds"], rows)
    click.echo(f"total ${total:.6f} ({period})")


@cli.command()
@click.option("--tracking-uri", help="Replay into this MLflow instead of each record's own.")
@click.pass_context
def sync(ctx: click.Context, tracking_uri: str | None) -> None:
    """Replay tracking records spooled while MLflow was away."""
    from runtime.tracking.client import sync_spool

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
    args = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
            "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts,
            "--serve-artifacts"]
    click.echo(f"MLflow server on http://{host}:{port} (store {backend_store_uri}, artifacts {artifacts})",
               err=True)
    os.execv(sys.executable, args)


def main() -> None:
    cli(prog_name="paretrain")


if __name__ == "__main__":  # pragma: no cover
    main()
