"""The commands that start a spec: ``init`` writes an example, ``spec-schema`` prints its schema."""

from __future__ import annotations

import json
from pathlib import Path

import click

from paretrain.planner.errors import InputError

__all__ = ["init", "spec_schema"]

_EXAMPLES = {
    "mnist1d": ("mnist1d.yaml", "MNIST-1D classifiers on this machine's CPU; target val_accuracy"),
    "stdlib-lm": (
        "stdlib_lm.yaml",
        "a byte-level GPT on this Python's standard-library source; target val_bpb (minimized)",
    ),
}


@click.command(
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

    from paretrain.runtime.files import atomic_write_text, check_writable

    check_writable(directory, "DIRECTORY", folder=True)
    name = _EXAMPLES[example][0]
    target = directory / name
    if target.exists() and not force:
        raise InputError(
            f"{target}: already exists. To fix: pass --force to overwrite it, or choose another directory"
        )
    text = resources.files("paretrain").joinpath(f"examples/{name}").read_text(encoding="utf-8")
    atomic_write_text(target, text)
    click.echo(f"wrote {target}\nnext: paretrain plan {target} -o plan.json")


@click.command("spec-schema")
def spec_schema() -> None:
    """Print the spec's JSON Schema."""
    from paretrain.planner.inputs.spec_parse import spec_json_schema

    click.echo(json.dumps(spec_json_schema(), indent=2))
