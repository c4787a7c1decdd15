"""The root command group: its options, and how paretrain's errors become exit codes.

Exit codes: 0 done; 2 bad input (one line on stderr, nothing written); 3 infeasible plan or a
run stopped at its budget, a divergence or a full disk; 130 / 143 stopped by SIGINT / SIGTERM (a
run after its checkpoint; plan, profile and search at their next unit of work, nothing half-written);
1 an internal fault (``--verbose`` shows the traceback).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import click

from paretrain.planner.errors import StopError, UserError

__all__ = ["cli"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Maps paretrain's errors to exit codes and one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except UserError as err:
            _fail(ctx, err, int(getattr(err, "exit_code", 2)))
        except StopError as err:  # a run stopped by a signal exits 128 + the signal
            _fail(ctx, err, int(getattr(err, "exit_code", 3)))
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
