"""paretrain's command line: a thin face over the planner and the runtime.

The root group and its exit codes live in ``paretrain.cli.group``; each theme of commands in a
module of its own, added to the group here. ``paretrain`` (the console script) runs ``main``.
"""

from __future__ import annotations

from paretrain.cli.group import cli
from paretrain.cli.planning import plan, profile, search
from paretrain.cli.records import compare, ledger, server, sync
from paretrain.cli.running import run
from paretrain.cli.start import init, spec_schema
from paretrain.worker import worker

__all__ = ["cli", "main"]

for _command in (init, spec_schema, profile, plan, search, run, compare, ledger, sync, server, worker):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="paretrain")
