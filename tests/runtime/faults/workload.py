"""A user's workload for the fault tests, written to a file the way a user writes one, and small
plans over it: the spec says ``workload: {file: ./wl.py, factory: make_workload}``, the plan is
built in-process from the synthetic Lab on an emulated offer (virtual clock), and the run goes
through the real command line (``python -m paretrain.cli``)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from paretrain.planner.inputs.catalog import builtin_catalog_text, local_offers, parse_catalog
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan import Plan
from paretrain.planner.plan.plan_file import plan_to_json
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.train.workloads import workloads_for
from tests.conftest import ROOT, as_from_a_terminal
from tests.planner.synthetic_lab import SyntheticLab

OFFER = "aws/g4dn.xlarge"

WORKLOAD = """
import torch
from torch import nn
from paretrain.workload import Family, Param, TensorDataset, Workload, WorkloadInfo

CALLS = {"loss": 0, "evaluate": 0}

class W(Workload):
    info = WorkloadInfo(
        name="tiny",
        families=(Family("mlp", (Param("width", "int", 4, 64, default=16),)),),
        lr=Param("lr", "float", 1e-4, 1.0, log=True, default=1e-2),
        metrics=(("val_loss", "minimize"), ("val_accuracy", "maximize")),
        target="val_accuracy",
    )
    def _data(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 6, generator=g)
        return TensorDataset(x, (x[:, 0] > 0).long())
    def train_dataset(self):
        return self._data(512, 0)
    def val_dataset(self):
        return self._data(128, 1)
    def build(self, config):
        w = config.param("width")
        return nn.Sequential(nn.Linear(6, w), nn.ReLU(), nn.Linear(w, 2))
"""


def on_call(member: str, call: int, action: str, imports: str = "") -> str:
    """Workload source (a ``fault`` for ``write_workload``) that makes ``W.<member>`` run
    ``action`` (one Python statement) at its ``call``-th call in the process, the dry check's
    included, and otherwise do what it did."""
    return f"""
{imports}
_base_{member} = W.{member}
def _{member}(self, *args):
    CALLS["{member}"] = CALLS.get("{member}", 0) + 1
    if CALLS["{member}"] == {call}:
        {action}
    return _base_{member}(self, *args)
W.{member} = _{member}
"""


def write_workload(folder: Path, fault: str = "") -> Path:
    """``wl.py`` in ``folder``: the workload above with ``fault`` (code changing ``W``) after it."""
    path = folder / "wl.py"
    text = WORKLOAD + textwrap.dedent(fault) + "\n\ndef make_workload():\n    return W()\n"
    path.write_text(text)
    return path


def spec_data(lr: float = 0.01, planner: dict | None = None, **runtime: Any) -> dict:
    return {
        "name": "faults",
        "workload": {"file": "./wl.py", "factory": "make_workload"},
        "configs": [{"id": "mlp-16", "family": "mlp", "width": 16, "lr": lr}],
        "target": {"goal": 0.9, "levels": [0.9], "max_samples": 40000},
        "budget": {"total_usd": 1.0, "envelopes": {"profile": 0.1, "search": 0.1, "train": 0.5}},
        "deadline_s": 100000,
        "hardware": {"allow": [OFFER], "catalog": "builtin", "spot": False},
        "planner": {
            "stages": 1,
            "batch_sizes": [32],
            "convergence_batch_sizes": [16, 64, 256],
            "noise": False,
            **(planner or {}),
        },
        "runtime": {"eval_every_samples": 512, "checkpoint_every_s": 0.05, "keep_checkpoints": 2, **runtime},
    }


def make_plan_in(
    folder: Path,
    fault: str = "",
    lr: float = 0.01,
    planner: dict | None = None,
    max_samples: int = 40000,
    **runtime: Any,
) -> Plan:
    """``wl.py``, ``spec.yaml`` and ``plan.json`` in ``folder``: one emulated stage (unless
    ``planner`` says otherwise), no search."""
    write_workload(folder, fault)
    data = spec_data(lr, planner, **runtime)
    data["target"]["max_samples"] = max_samples
    return plan_in(folder, data)


def plan_in(folder: Path, data: dict) -> Plan:
    """``spec.yaml`` (``data``) and ``plan.json`` in ``folder``, planned from the synthetic lab:
    on the emulated ``OFFER`` when the spec allows it, else on the local offers it allows."""
    (folder / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    where = str(folder / "spec.yaml")
    spec = parse_spec(data, where, workloads_for(data["workload"], where))
    lab = SyntheticLab(e_min={c.id: 3000.0 for c in spec.configs}, best={c.id: 1.0 for c in spec.configs})
    profile = build_profile(spec, lab, list(spec.configs))
    if OFFER in spec.hardware.allow:
        offers = [replace(o, switch_s=0.01) for o in parse_catalog(builtin_catalog_text()) if o.id == OFFER]
    else:
        offers = [o for o in local_offers(lab.devices(), spec.hardware) if o.id in spec.hardware.allow]
    problem, ctx = build_problem(spec, offers, profile, list(spec.configs))
    plan = make_plan(
        spec=spec,
        profile_key="test",
        problem=problem,
        ctx=ctx,
        front=pareto_front(problem),
        configs=list(spec.configs),
        offers=offers,
        solver="highs",
    )
    (folder / "plan.json").write_text(plan_to_json(plan))
    return plan


def paretrain_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PARETRAIN_VERBOSE", None)
    env.pop("PARETRAIN_TEST_KILL_AT_LINE", None)
    return env


def run_args(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "paretrain.cli",
        "run",
        "plan.json",
        "--candidate",
        "cheapest",
        "--no-track",
        *extra,
    ]


def start(folder: Path, args: list[str]) -> subprocess.Popen[str]:
    """``args`` (a whole command line) started in ``folder``, its output piped, with SIGINT at its
    default as from a terminal (``tests.conftest.as_from_a_terminal``): for the tests that signal it."""
    return subprocess.Popen(
        args,
        cwd=folder,
        env=paretrain_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )


def paretrain(folder: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paretrain.cli", *args],
        cwd=folder,
        env=paretrain_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_plan(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return paretrain(folder, "run", "plan.json", "--candidate", "cheapest", "--no-track", *extra)


def one_line(stderr: str) -> str:
    """The one line paretrain wrote on stderr (the run's own log lines aside), no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("paretrain:")]
    assert len(lines) == 1, stderr
    return lines[0]


def ledger(folder: Path) -> list[dict]:
    files = sorted((folder / ".paretrain" / "ledger").glob("run-*.jsonl"))
    return [c for f in files for c in read_charges(f)]


def assert_ledger_consistent(folder: Path, budget: float, *, billed: bool = True) -> float:
    """The ledger's lines are whole, numbered without gap, within ``budget``, and its last hold
    settled (no compute after the last billing increment; a local offer, ``billed`` False, bills
    as it goes: its teardown is the last compute). Returns its total."""
    lines = ledger(folder)
    ids = [int(c["id"].rsplit(":", 1)[1]) for c in lines]
    assert ids == list(range(len(lines)))
    total = math.fsum(c["usd"] for c in lines)
    assert total <= budget
    ends = "billing increment" if billed else "teardown"
    last_bill = max(i for i, c in enumerate(lines) if c.get("what") == ends)
    assert not [c for c in lines[last_bill + 1 :] if c["kind"] == "compute" and c["usd"] > 0]
    return total
