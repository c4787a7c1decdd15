"""paretrain's command line: a thin face over the planner and the runtime.

The root group and its exit codes live in ``paretrain.cli.group``; each theme of commands in a
module of its own, added to the group here. ``paretrain`` (the console script) runs ``main``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

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
    """Run the command. Once it has returned, its outcome is decided: a SIGTERM or SIGINT while
    the interpreter shuts down (MLflow's and the database drivers' teardown can take a second)
    ends the process at once with the command's own exit code, not the signal's, which would
    tell a supervisor that a plan already written, or a run already at its target, failed."""
    code: int | str | None = 0
    try:
        cli(prog_name="paretrain")
    except SystemExit as done:
        code = done.code
        raise
    finally:
        status = code if isinstance(code, int) else (0 if code is None else 1)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda _s, _f: _exit_now(status))


def _exit_now(status: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
