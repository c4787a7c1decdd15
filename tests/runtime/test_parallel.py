"""Data-parallel stages on local CPUs: rank 0 here and a helper under torch's elastic launcher
train exactly like one process on the whole batch, follow state loads, run a plan's stage
through the executor, and never outlive their run."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec import WorkloadSpec
from paretrain.runtime.run.executor import Executor
from paretrain.runtime.train.parallel import ParallelTrainer
from paretrain.runtime.train.trainer import Trainer
from paretrain.runtime.train.workloads.mnist1d import Mnist1D
from tests.runtime.plans import make_test_plan, tiny_spec, with_spec

ROOT = Path(__file__).resolve().parents[2]
CFG = Config("mlp-32", "mlp", (("depth", 2), ("width", 32)), lr=0.01)
SOURCE = WorkloadSpec(name="mnist1d", samples=1000, seed=0)


def _params(tr: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in tr.model.parameters()])


def test_two_workers_train_like_one_process_on_the_whole_batch():
    work = Mnist1D(samples=1000, seed=0)
    one = Trainer(work, CFG, batch_size=64, seed=3)
    two = ParallelTrainer(work, CFG, workers=2, threads=1, batch_size=64, seed=3, source=SOURCE)
    try:
        losses = [(one.step(), two.step()) for _ in range(12)]
        for a, b in losses:
            assert a == pytest.approx(b, rel=1e-5)
        assert torch.allclose(_params(one), _params(two), atol=1e-5)
        one.set_batch_size(128, warmup_steps=2)
        two.set_batch_size(128, warmup_steps=2)
        for _ in range(4):
            one.step()
            two.step()
        assert torch.allclose(_params(one), _params(two), atol=1e-5)
        assert two.samples_seen == one.samples_seen == 12 * 64 + 4 * 128
        # a state load on rank 0 reaches the replica: both go on from an earlier state alike
        snapshot = Trainer(work, CFG, batch_size=32, seed=99)
        for _ in range(5):
            snapshot.step()
        state = snapshot.state_dict()
        one.load_state_dict(copy.deepcopy(state))  # Adam keeps loaded tensors: no sharing between trainers
        two.load_state_dict(copy.deepcopy(state))
        for _ in range(6):
            assert one.step() == pytest.approx(two.step(), rel=1e-5)
        assert torch.allclose(_params(one), _params(two), atol=1e-5)
        with pytest.raises(ValueError, match="split evenly"):
            two.set_batch_size(33)
    finally:
        two.close()
    assert two.generations == 1
    assert two.rdzv.agent is None  # the launcher's agent ended with its helpers


@pytest.mark.slow
def test_a_plans_two_worker_stage_runs_on_two_processes(tmp_path):
    plan = with_spec(
        make_test_plan(tiny_spec(hardware={"allow": ["local/cpu-1"], "catalog": "none"})),
        runtime={"eval_every_samples": 400, "checkpoint_every_s": 0.2, "keep_checkpoints": 2, "adapt": False},
    )
    cand = plan.candidate("cheapest")
    assert len(cand.stages) == 2
    first = cand.stages[0]
    # 5 steps of 2 x 32: the first stage ends before the first evaluation (400 samples), the only
    # place the run can stop at its target, so the run always goes on to the one-worker stage
    stages = (
        replace(
            first, hardware="local/cpu-1", workers=2, instances=2, batch_size=32, samples=5 * 64, steps=5
        ),
        *(replace(s, hardware="local/cpu-1", workers=1, batch_size=64) for s in cand.stages[1:]),
    )
    cand = replace(cand, stages=stages)
    result = Executor(plan, cand, workdir=tmp_path, run_id="dp").run()
    assert result.status == "target"
    assert result.samples > stages[0].samples
    workers = [e["workers"] for e in result.events if e["event"] == "workers"]
    assert workers[:2] == [2, 1], result.events


def test_helpers_do_not_outlive_a_killed_run(tmp_path):
    pids = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import json
        from paretrain.planner.inputs.space import Config
        from paretrain.planner.inputs.spec import WorkloadSpec
        from paretrain.runtime.train.parallel import ParallelTrainer
        from paretrain.runtime.train.workloads.mnist1d import Mnist1D
        tr = ParallelTrainer(Mnist1D(samples=500, seed=0), Config("m", "mlp"), workers=2, threads=1,
                             batch_size=32, source=WorkloadSpec(name="mnist1d", samples=500, seed=0))
        tr.step()
        helper = json.loads(tr.rdzv.store.get("paretrain/arrival/1"))["pid"]
        open({str(pids)!r}, "w").write(f"{{tr.rdzv.agent.pid}} {{helper}}")
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 120
        while not (pids.exists() and pids.read_text()) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        if not (pids.exists() and pids.read_text()):
            why = (
                f"exited with code {proc.returncode}" if proc.poll() is not None else "timed out after 120 s"
            )
            pytest.fail(f"the run never wrote its helpers' pids: it {why}", pytrace=False)
        helpers = [int(p) for p in pids.read_text().split()]  # the elastic agent and its helper
        assert len(helpers) == 2 and all(_alive(p) for p in helpers)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 15
    while any(_alive(p) for p in helpers) and time.time() < deadline:
        time.sleep(0.2)
    alive = [p for p in helpers if _alive(p)]
    assert not alive, f"timed out: helpers {alive} still alive 15 s after their run was killed"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
