"""The commands that plan: ``profile`` measures, ``search`` explores, ``plan`` writes the schedules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from paretrain.cli.options import data_workspace, format_option, tracking_options
from paretrain.console import Output
from paretrain.output import (
    show_diverged,
    show_fits,
    show_plan,
    show_plan_written,
    show_profile,
    show_profile_cost,
    show_search,
)
from paretrain.planner.errors import InputError
from paretrain.run_output import show_tracking

__all__ = ["plan", "profile", "search"]


@contextlib.contextmanager
def _stopped_by_signal(ctx: click.Context) -> Iterator[None]:
    """A search stopped by SIGTERM / SIGINT (``paretrain.runtime.trials.stopping``): its one
    line, and exit 143 / 130 rather than a stop's 3."""
    from paretrain.planner.search.faults import SearchInterrupted

    try:
        yield
    except SearchInterrupted as err:
        click.echo(click.style("paretrain:", fg="red", bold=True) + f" {err}", err=True)
        ctx.exit(err.exit_code)


def _planning_flag() -> Any:
    """SIGTERM / SIGINT while profiling or planning: the first stops at the next unit of
    measuring (``paretrain.runtime.profiling.get_profile``), the second at once."""
    from paretrain.runtime.train.signals import StopFlag

    return StopFlag(
        again="what was measured is charged in the profile's ledger; no profile or plan was written"
    )


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the profile here (to bring to another machine's spec).",
)
@click.option("--force", is_flag=True, help="Measure again even if a cached profile matches.")
@format_option
@click.pass_context
def profile(ctx: click.Context, spec_path: Path, output: Path | None, force: bool, fmt: str) -> None:
    """Measure the candidate hardware here; write a profile file."""
    from paretrain.runtime.files import check_writable, write_profile
    from paretrain.runtime.pipeline import check_inputs
    from paretrain.runtime.profiling import get_profile
    from paretrain.runtime.spec_files import read_spec
    from paretrain.runtime.train.signals import stop_on_signals

    spec = read_spec(spec_path)
    offers = check_inputs(spec)
    ws = data_workspace(ctx)
    if output:
        check_writable(output, "-o")
    with Output(fmt) as ui, stop_on_signals(_planning_flag()) as flag:
        with ui.progress("profiling") as bar:
            prof, reused = get_profile(
                spec, ws, list(spec.configs), offers, progress=bar, force=force, stop=flag, note=ui.log
            )
        show_diverged(ui, prof)
        if output:
            write_profile(prof, output)
        show_profile(ui, prof, reused, output or ws.profiles / f"{prof.key}.json")


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("plan.json"),
    show_default=True,
    help="Where to write the plan; pareto.png goes beside it.",
)
@tracking_options
@click.option("--reprofile", is_flag=True, help="Measure again even if a cached profile matches.")
@format_option
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
    """Profile (cached), compute the exact Pareto front of schedules, and write it."""
    from paretrain.planner.plan.plan_file import plan_to_json
    from paretrain.runtime.files import atomic_write_text, check_writable, has_password
    from paretrain.runtime.pipeline import check_inputs, plan_spec, search_spec
    from paretrain.runtime.spec_files import read_spec
    from paretrain.runtime.tracking.plan_log import log_plan
    from paretrain.runtime.tracking.plots import plot_pareto
    from paretrain.runtime.tracking.session import open_session, parent_run
    from paretrain.runtime.train.signals import stop_on_signals

    spec = read_spec(spec_path)
    ws = data_workspace(ctx)
    check_writable(output, "-o")  # before the profile is paid for, not after
    check_inputs(spec, search=spec.search.trials > 0)  # bad input: exit 2 before anything is spent or logged
    session = open_session(tracking_uri, spec.tracking.uri, spec.experiment, ws.spool, enabled=not no_track)
    with Output(fmt) as ui, stop_on_signals(_planning_flag()) as flag:
        with parent_run(session, "plan", kind="plan") as parent:
            found: list[Any] = []
            if spec.search.trials > 0:
                with ui.progress("search") as bar:
                    result = search_spec(spec, ws, tracker=session.tracker, parent=parent, progress=bar)
                show_search(ui, result)
                found = [c for c, _ in result.front[: spec.search.front]]
            with ui.progress("profiling") as bar:
                the_plan, prof, reused = plan_spec(
                    spec,
                    ws,
                    progress=bar,
                    force_profile=reprofile,
                    search_configs=found,
                    stop=flag,
                    note=ui.log,
                )
            show_profile(ui, prof, reused)
            show_diverged(ui, prof)
            show_fits(ui, the_plan)
            # a plan holds its spec: private when the spec holds a database password
            spec_uris = (the_plan.spec.tracking.uri, the_plan.spec.search.storage)
            atomic_write_text(output, plan_to_json(the_plan), private=has_password(*spec_uris))
            png = plot_pareto(the_plan, output.parent / "pareto.png")
            show_plan(ui, the_plan)
            show_profile_cost(ui, prof, reused, the_plan)
            show_plan_written(ui, the_plan, output, png)
            log_plan(session.tracker, parent, spec, the_plan, artifacts=(spec_path, output, png))
        show_tracking(ui, session.close())


@click.command()
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
@tracking_options
@format_option
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
    ws = data_workspace(ctx)
    session = open_session(tracking_uri, spec.tracking.uri, spec.experiment, ws.spool, enabled=not no_track)
    with _stopped_by_signal(ctx), Output(fmt) as ui:
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
