"""When a user's training goes wrong, on MNIST-1D and on the digits example: each fault against
an unfaulted run.

Run cases: every case trains the same candidate (an MLP, one emulated stage: virtual clock, so the
spend is the same on any machine) through the real command line, with the fault put into a
user's workload file (``workload: {file: ./wl.py}``): the built-in MNIST-1D underneath, or the
digits example's ``digits_workload.py`` (examples/custom_workload), copied beside it and
imported from there as a user's own module. Where the fault stops the run, the fault is removed
("fixed", space freed) and the run continued with ``--resume``. For each case: the exit code of
the faulted run, the spend of the whole run (faulted run and resume) against the unfaulted one,
the training samples lost (steps the ledger declares lost by a resume or a rollback, times the
batch) and whether the run reached its target in the end. The full disk is injected in this
process (``ENOSPC`` at the third checkpoint), the others run as subprocesses.

Plan cases: ``paretrain plan`` measures for real (the TorchLab on ``local/cpu-1``, charged to the
profile envelope): unfaulted; SIGTERM while it times steps (then the same command again, which
must write the plan); a second config whose loss turns NaN in its convergence run (left out of
the plan). Their spend is the profile ledger's, against the unfaulted plan's.

    .venv/bin/python benchmarks/faults.py
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml

from paretrain.planner.inputs.catalog import builtin_catalog_text, parse_catalog
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.plan.make import make_plan
from paretrain.planner.plan.plan_file import plan_to_json
from paretrain.planner.program.build import build_problem
from paretrain.planner.program.milp import pareto_front
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.train.workloads import workloads_for
from tests.planner.synthetic_lab import SyntheticLab

OFFER, BATCH = "aws/g4dn.xlarge", 32
CALLS = 'CALLS = {"loss": 0, "evaluate": 0, "items": 0}\n'
DIGITS_FILE = ROOT / "examples" / "custom_workload" / "digits_workload.py"


@dataclass(frozen=True)
class Workload:
    """A workload the cases run on: how ``wl.py`` gets it (a subclass of its own, which the fault
    patches: the full disk runs in this process, where the base class is shared), its config and
    goal, the files it needs beside it, and a ``runtime.max_memory_mb`` that its step at batch 32
    passes and at 16 fits."""

    name: str
    base: str
    factory: str
    config: dict[str, Any]
    goal: float
    files: tuple[Path, ...]
    memory_mb: float


WORKLOADS = (
    Workload(
        "mnist1d",
        "from paretrain.runtime.train.workloads.mnist1d import Mnist1D\nclass W(Mnist1D): pass\n",
        "W(samples=4000, seed=0)",
        {"id": "mlp-64", "family": "mlp", "width": 64, "depth": 1, "lr": 0.003},
        0.45,
        (),
        0.08,  # the step's estimated peak: 0.094 MB at batch 32, 0.072 at 16
    ),
    Workload(
        "digits",
        "from digits_workload import Digits\nclass W(Digits): pass\n",  # the user's module beside wl.py
        "W(seed=0, val_fraction=0.2)",
        {"id": "mlp-64x2", "family": "mlp", "width": 64, "depth": 2, "lr": 0.003},
        0.93,
        (DIGITS_FILE,),
        0.2,  # 0.230 MB at batch 32, 0.184 at 16
    ),
)

SLOW = """
import time
_loss = W.loss
def _slow(self, model, batch):
    time.sleep(0.01)
    return _loss(self, model, batch)
W.loss = _slow
"""
NAN = """
_loss = W.loss
def _nan(self, model, batch):
    CALLS["loss"] += 1
    loss = _loss(self, model, batch)
    return loss * float("nan") if CALLS["loss"] {op} 60 else loss
W.loss = _nan
"""
LOADER = """
import torch
class _Corrupt(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base = base
    def __len__(self):
        return len(self.base)
    def __getitem__(self, i):
        CALLS["items"] += 1
        if CALLS["items"] == 3000:
            raise ValueError(f"sample {i} cannot be read")
        return self.base[i]
_train = W.train_dataset
W.train_dataset = lambda self: _Corrupt(_train(self))
"""
EVALUATE = """
_evaluate = W.evaluate
def _third(self, model, batches):
    CALLS["evaluate"] += 1
    if CALLS["evaluate"] >= 3:
        raise RuntimeError("the metric server is gone")
    return _evaluate(self, model, batches)
W.evaluate = _third
"""
OOM = """
import torch
_loss = W.loss
def _oom(self, model, batch):
    if len(batch[0]) > 16:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
    return _loss(self, model, batch)
W.loss = _oom
"""
#: the second config (width 128) diverges in its convergence runs: NaN after its model's 20th step
WIDE_NAN = """
_build, _loss = W.build, W.loss
def _marked(self, config):
    model = _build(self, config)
    model.diverges, model.steps = config.param("width") == 128, 0
    return model
def _nan(self, model, batch):
    model.steps += 1
    loss = _loss(self, model, batch)
    return loss * float("nan") if model.diverges and model.steps > 20 else loss
W.build, W.loss = _marked, _nan
"""


def write_workload(folder: Path, wl: Workload, fault: str) -> None:
    for f in wl.files:
        shutil.copy(f, folder / f.name)
    text = wl.base + CALLS + textwrap.dedent(fault) + f"\n\ndef make_workload():\n    return {wl.factory}\n"
    (folder / "wl.py").write_text(text)


def spec_data(wl: Workload, **runtime: Any) -> dict[str, Any]:
    return {
        "name": f"faults-bench-{wl.name}",
        "workload": {"file": "./wl.py", "factory": "make_workload"},
        "configs": [wl.config],
        "target": {"goal": wl.goal, "levels": [wl.goal], "max_samples": 80000},
        "budget": {"total_usd": 1.0, "envelopes": {"profile": 0.1, "search": 0.1, "train": 0.5}},
        "deadline_s": 100000,
        "hardware": {"allow": [OFFER], "catalog": "builtin", "spot": False},
        "planner": {"stages": 1, "batch_sizes": [BATCH], "noise": False},
        "runtime": {"eval_every_samples": 1024, "checkpoint_every_s": 0.02, "keep_checkpoints": 2, **runtime},
    }


def make_case(folder: Path, wl: Workload, fault: str, **runtime: Any) -> float:
    """wl.py, spec.yaml and plan.json in ``folder``; returns the candidate's predicted cost."""
    write_workload(folder, wl, fault)
    data = spec_data(wl, **runtime)
    (folder / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    where = str(folder / "spec.yaml")
    spec = parse_spec(data, where, workloads_for(data["workload"], where))
    lab = SyntheticLab(e_min={c.id: 6000.0 for c in spec.configs}, best={c.id: 1.0 for c in spec.configs})
    profile = build_profile(spec, lab, list(spec.configs))
    # provisioned in 10 ms and billed continuously without a minimum, so the spend shows the work
    # (billed by the second, 60 at least, every hold of these sub-second runs would cost the same)
    offers = [
        replace(o, switch_s=0.01, billing_increment_s=0.0, billing_minimum_s=0.0)
        for o in parse_catalog(builtin_catalog_text())
        if o.id == OFFER
    ]
    problem, ctx = build_problem(spec, offers, profile, list(spec.configs))
    plan = make_plan(
        spec=spec,
        profile_key="bench",
        problem=problem,
        ctx=ctx,
        front=pareto_front(problem),
        configs=list(spec.configs),
        offers=offers,
        solver="highs",
    )
    (folder / "plan.json").write_text(plan_to_json(plan))
    return plan.candidate("cheapest").cost_usd


def command(*extra: str) -> list[str]:
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


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def ledger(folder: Path, kind: str = "run") -> list[dict[str, Any]]:
    return [
        c for f in sorted((folder / ".paretrain" / "ledger").glob(f"{kind}-*.jsonl")) for c in read_charges(f)
    ]


def run(folder: Path, *extra: str, signal_after: int = 0, args: list[str] | None = None) -> int:
    """``paretrain run`` (or ``args``) in ``folder``; with ``signal_after``, that signal once the
    run has charged 30 steps (``args``: once the profile has charged its step timing)."""
    proc = subprocess.Popen(
        args or command(*extra), cwd=folder, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    if signal_after:
        while proc.poll() is None and not _due(folder, args is not None):
            time.sleep(0.05)
        proc.send_signal(signal_after)
    proc.communicate(timeout=600)
    return proc.returncode


def _due(folder: Path, profiling: bool) -> bool:
    try:
        if profiling:
            return any(c.get("what", "").startswith("steps of") for c in ledger(folder, "profile"))
        return sum(c.get("what") == "train" for c in ledger(folder)) >= 30
    except (OSError, ValueError, StopIteration):
        return False


def full_disk_run(folder: Path) -> int:
    """The run in this process, the third checkpoint's write finding the disk full."""
    from click.testing import CliRunner

    from paretrain.cli import cli
    from paretrain.runtime.train import checkpoint

    real, seen = checkpoint.atomic_write_bytes, [0]

    def fill(*args: Any) -> None:
        seen[0] += 1
        if seen[0] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args)

    here = os.getcwd()
    os.chdir(folder)
    checkpoint.atomic_write_bytes = fill  # type: ignore[assignment]  (the injected full disk)
    try:
        return CliRunner().invoke(cli, command()[3:]).exit_code
    finally:
        checkpoint.atomic_write_bytes = real  # type: ignore[assignment]  (space is freed)
        os.chdir(here)


CASES: list[tuple[str, str, dict[str, Any], str]] = [
    # name, fault, runtime settings, how it is triggered
    ("unfaulted", "", {}, "run"),
    ("nan loss once (retry)", NAN.format(op="=="), {}, "run"),
    ("nan loss always", NAN.format(op=">="), {}, "run"),
    ("nan loss, on_divergence: stop", NAN.format(op=">="), {"on_divergence": "stop"}, "run"),
    ("loader raises mid-run", LOADER, {}, "run"),
    ("evaluate raises (3rd call)", EVALUATE, {}, "run"),
    ("SIGTERM", SLOW, {}, "SIGTERM"),
    ("SIGINT", SLOW, {}, "SIGINT"),
    ("full disk at a checkpoint", "", {}, "disk"),
    ("max_memory_mb", "", {"max_memory_mb": None}, "run"),  # the workload's own cap
    ("out of memory above batch 16", OOM, {}, "run"),
]

PLAN_CASES: list[tuple[str, str, str]] = [
    ("plan: unfaulted", "", "run"),
    ("plan: SIGTERM while profiling", SLOW, "SIGTERM"),
    ("plan: a config diverges", WIDE_NAN, "run"),
]


def lost_samples(lines: list[dict[str, Any]]) -> int:
    """Training samples in the ledger lines a resume or rollback declared lost."""
    lost = 0
    for i, c in enumerate(lines):
        if c.get("event") in ("resume", "rollback") and "from_line" in c:
            lost += BATCH * sum(1 for x in lines[c["from_line"] : i] if x.get("what") == "train")
    return lost


def one_case(wl: Workload, name: str, fault: str, runtime: dict[str, Any], how: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="faults-"))
    if "max_memory_mb" in runtime:
        runtime = {**runtime, "max_memory_mb": wl.memory_mb}
    predicted = make_case(folder, wl, fault, **runtime)
    t0 = time.perf_counter()
    if how == "disk":
        code = full_disk_run(folder)
    else:
        code = run(folder, signal_after=int(getattr(signal, how)) if how.startswith("SIG") else 0)
    resumed = None
    if code not in (0, 3) or how == "disk":  # fixed (the fault removed, space freed), then continued
        write_workload(folder, wl, "")
        resumed = run(folder, "--resume") == 0
    lines = ledger(folder)
    statuses = [
        json.loads(p.read_text())["status"] for p in (folder / ".paretrain" / "runs").glob("*/status.json")
    ]
    return {
        "workload": wl.name,
        "case": name,
        "exit_code": code,
        "spend_usd": math.fsum(c["usd"] for c in lines),
        "predicted_usd": predicted,
        "samples_lost": lost_samples(lines),
        "resume_reached_target": resumed,
        "reached_target": statuses == ["target"],
        "events": sorted({c["event"] for c in lines if c.get("kind") == "event"}),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def plan_case(wl: Workload, name: str, fault: str, how: str) -> dict[str, Any]:
    """``paretrain plan`` measuring for real on ``local/cpu-1``; after a signal, the same command
    again without the fault. ``reached_target``: a plan was written, of the config(s) that train."""
    folder = Path(tempfile.mkdtemp(prefix="faults-plan-"))
    write_workload(folder, wl, fault)
    data = spec_data(wl)
    data["hardware"] = {"allow": ["local/cpu-1"], "catalog": "none"}
    data["planner"] = {**data["planner"], "convergence": "full", "convergence_batch_sizes": [16, 64, 256]}
    if fault == WIDE_NAN:
        data["configs"] = [wl.config, {**wl.config, "id": f"{wl.config['id']}-w128", "width": 128}]
    (folder / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    args = [sys.executable, "-m", "paretrain.cli", "plan", "spec.yaml", "-o", "plan.json", "--no-track"]
    t0 = time.perf_counter()
    code = run(folder, args=args, signal_after=int(getattr(signal, how)) if how.startswith("SIG") else 0)
    written = (folder / "plan.json").exists()
    resumed = None
    if code != 0:
        write_workload(folder, wl, "")
        resumed = run(folder, args=args) == 0 and (folder / "plan.json").exists()
    planned = (
        sorted({c["config"] for c in json.loads((folder / "plan.json").read_text())["pareto"]})
        if (folder / "plan.json").exists()
        else []
    )
    lines = ledger(folder, "profile")
    return {
        "workload": wl.name,
        "case": name,
        "exit_code": code,
        "spend_usd": math.fsum(c["usd"] for c in lines),
        "plan_written_by_faulted_command": written,
        "planned_configs": planned,
        "samples_lost": 0,
        "resume_reached_target": resumed,
        "reached_target": planned == [wl.config["id"]],
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    rows: list[dict[str, Any]] = []
    for wl in WORKLOADS:
        runs = [one_case(wl, *case) for case in CASES]
        plans = [plan_case(wl, *case) for case in PLAN_CASES]
        for group in (runs, plans):
            base = group[0]["spend_usd"]
            for r in group:
                r["spend_vs_unfaulted"] = r["spend_usd"] / base if base else math.nan
        rows += runs + plans
    head = (
        f"{'workload':8} {'case':32} {'exit':>4} {'spend $':>10} {'x unfaulted':>11} {'lost':>6} "
        f"{'resume':>7} {'target':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        resume = (
            "-" if r["resume_reached_target"] is None else ("yes" if r["resume_reached_target"] else "no")
        )
        print(
            f"{r['workload']:8} {r['case']:32} {r['exit_code']:>4} {r['spend_usd']:>10.6f} "
            f"{r['spend_vs_unfaulted']:>11.3f} {r['samples_lost']:>6} {resume:>7} "
            f"{'yes' if r['reached_target'] else 'no':>6}"
        )
    out = ROOT / "benchmarks" / "results" / "faults.json"
    record = {
        "benchmark": "faults",
        "offer": OFFER,
        "batch": BATCH,
        "workloads": [w.name for w in WORKLOADS],
        "cases": rows,
    }
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
