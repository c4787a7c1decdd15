"""``python -m paretrain.worker HOST:PORT``: a helper rank of a run's data-parallel stage, as
torch's elastic launcher starts it (``torchrun ... -m paretrain.worker HOST:PORT``); and
``paretrain worker``, which runs that launcher on another machine of the run. Thin: the work is
in ``paretrain.runtime.train.helper`` and ``paretrain.runtime.train.elastic``."""

from __future__ import annotations

import sys

import click

__all__ = ["main", "worker"]


def main() -> int:
    from paretrain.runtime.train.helper import main as serve

    return serve(sys.argv[1:])


@click.command()
@click.option(
    "--rdzv-endpoint",
    required=True,
    metavar="HOST:PORT",
    help="The run's rendezvous (PARETRAIN_RDZV_ENDPOINT of 'paretrain run').",
)
@click.option("--nnodes", type=int, help="Launcher nodes of the stage (default: what the run says).")
@click.option("--nproc-per-node", type=int, help="Processes on this machine (default: what the run says).")
@click.option("--max-restarts", type=int, help="Restarts of the helper group (default: the run's).")
@click.option("--local-addr", help="This machine's address as the others reach it.")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=3600.0,
    show_default=True,
    help="Seconds to wait for the run's next multi-process stage.",
)
def worker(
    rdzv_endpoint: str,
    nnodes: int | None,
    nproc_per_node: int | None,
    max_restarts: int | None,
    local_addr: str | None,
    timeout_s: float,
) -> None:
    """Lend this machine to a run's data-parallel stages (torch's elastic launcher, c10d)."""
    from paretrain.runtime.train.node import run_worker_node

    rc = run_worker_node(
        rdzv_endpoint,
        nnodes=nnodes,
        nproc=nproc_per_node,
        max_restarts=max_restarts,
        local_addr=local_addr,
        timeout_s=timeout_s,
        log=lambda m: click.echo(m, err=True),
    )
    sys.exit(rc)


if __name__ == "__main__":
    sys.exit(main())
