"""The tutorial's commands run, in order, as a user types them, and each exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial" / "first-plan.md"
BIN = Path(sys.executable).parent


def shell_commands(markdown: str) -> list[str]:
    """Lines starting with '$ ' inside fenced code blocks, in order, without the prompt."""
    commands, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced and line.startswith("$ "):
            commands.append(line[2:].strip())
    return commands


def test_shell_commands_are_read_from_fenced_blocks_only():
    text = "$ not this\n```\n$ paretrain init .\noutput\n```\n$ nor this\n```yaml\nkey: 1\n$ echo x\n```\n"
    assert shell_commands(text) == ["paretrain init .", "echo x"]


@pytest.mark.slow
def test_every_tutorial_command_exits_0(tmp_path):
    commands = shell_commands(TUTORIAL.read_text())
    assert commands and commands[0].startswith("paretrain init")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MPLBACKEND": "Agg",
    }
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200
        )
        assert result.returncode == 0, f"$ {command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
