"""The ``run`` command: train a plan's candidate for real, within its budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from paretrain.cli.options import data_workspace, format_option, tracking_options
from paretrain.console import Output, usd
from paretrain.planner.errors import StopError, UserError
from paretrain.run_output import show_result, show_running, show_tracking

__all__ = ["run"]


@click.command()
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
@tracking_options
@format_option
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
    from paretrain.runtime.train.elastic_settings import Settings

    Settings.from_env()  # a bad PARETRAIN_* setting is input: exit 2 before anything runs
    the_plan = read_plan(plan_path)
    cand = the_plan.candidate(candidate)
    spec = plan_spec_of(the_plan)
    prices = read_prices(prices_path, the_plan)
    ws = data_workspace(ctx)
    choice = choose_resume(ws.root, the_plan, cand) if resume else None
    if choice is not None and choice.run_id is not None and not choice.finished:
        _free_ledger(ws, choice.run_id)
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


def _free_ledger(ws: Any, run_id: str) -> None:
    """Bad input (exit 2, before anything is written) when another process still writes the
    ledger of run ``run_id``: resuming a run that is still training would spend its budget twice."""
    from paretrain.runtime.locks import probe

    probe(
        ws.ledgers / f"{run_id}.jsonl",
        f"run {run_id}, which is still training",
        fix="resuming it now would spend its budget twice",
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
    from paretrain.runtime.run.setup import checked_workload
    from paretrain.runtime.tracking.session import open_session

    workload = checked_workload(the_plan, cand, ws.root)  # a broken workload: exit 2, nothing written
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
        workload=workload,
    )
    result = None
    try:
        result = ex.run()
    except (StopError, UserError) as err:  # a run that stopped or failed still shows what it did
        result = getattr(err, "result", None)
        raise
    finally:
        if result is not None:
            show_result(ui, result)
            _profile_share(ui, ws, the_plan.profile_key, result, cand.start)
        report = session.close(result.tracking_run if result is not None else None)
        if result is not None and result.tracking_run:
            show_tracking(ui, report)


def _profile_share(ui: Output, ws: Any, key: str, result: Any, start: Any) -> None:
    """What knowing cost against what doing did: the plan's profile (when its file is in this
    workspace) over this run's spend, as ``profile $X = N% of the run``; when the run started
    from the profile's checkpoint (``start``, and the run did load it), also net of that start
    (``paretrain.output.knowing``)."""
    from paretrain.output import knowing, knowing_line
    from paretrain.runtime.files import read_profile

    run_usd = result.cost_usd
    reused = int(getattr(result, "reused_samples", 0) or 0)
    path = ws.profiles / f"{key}.json"
    if not key or not path.is_file():
        return
    try:
        spent = read_profile(path).spend_usd
    except (OSError, ValueError, UserError):
        return
    k = knowing(spent, run_usd, start if reused else None)
    ui.put("profile_share", k)
    ui.line(f"profile ${usd(spent)} = {k['share']:.0%} of the run (${usd(run_usd)})")
    if line := knowing_line(k, reused, "the run's"):
        ui.line(line)
