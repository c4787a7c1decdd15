"""Data-parallel stages on torch's elastic launcher: two launcher agents as two "nodes" on this
machine train like one process; a helper killed with ``kill -9`` mid-stage rolls the run back
to its last checkpoint within the budget, the lost work in the ledger; a machine that never
joins stops the run with exit 3, naming it, charging only the processes that were held."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from paretrain.planner.errors import BudgetExhausted
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec import WorkloadSpec
from paretrain.planner.plan.plan_file import plan_to_json
from paretrain.runtime.money.ledger import read_charges
from paretrain.runtime.run.executor import Executor
from paretrain.runtime.train.elastic import Rendezvous, Settings, split
from paretrain.runtime.train.parallel import ParallelTrainer
from paretrain.runtime.train.trainer import Trainer
from paretrain.runtime.train.workloads.mnist1d import Mnist1D
from tests.e2e.cli import ledger_total, paretrain
from tests.runtime.plans import make_test_plan, tiny_spec, with_spec

ROOT = Path(__file__).resolve().parents[2]
CFG = Config("mlp-32", "mlp", (("depth", 2), ("width", 32)), lr=0.01)


def test_a_stage_splits_its_workers_over_the_machines():
    assert split(2, 1) == (1, 2)
    assert split(3, 2) == (1, 1)  # the run's process and one helper here, one process there
    assert split(2, 2) == (0, 1)  # only the run's process here: no agent on this machine


@pytest.mark.slow
def test_two_launcher_nodes_train_like_one_process(tmp_path):
    work = Mnist1D(samples=1000, seed=0)
    one = Trainer(work, CFG, batch_size=48, seed=3)
    rdzv = Rendezvous(Settings(nnodes=2, timeout_s=120.0), run_id="two-nodes")
    three = ParallelTrainer(
        work,
        CFG,
        workers=3,
        threads=1,
        batch_size=48,
        seed=3,
        rendezvous=rdzv,
        source=WorkloadSpec(name="mnist1d", samples=1000, seed=0),
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paretrain.cli",
            "worker",
            "--rdzv-endpoint",
            rdzv.endpoint,
            "--local-addr",
            "127.0.0.1",
            "--timeout",
            "120",
        ],
        cwd=tmp_path,
        env=env,
    )
    again = None
    try:
        for _ in range(4):
            assert one.step() == pytest.approx(three.step(), rel=1e-5)
        arrivals = [json.loads(rdzv.store.get(f"paretrain/arrival/{k}")) for k in (1, 2)]
        assert sorted(a["node"] for a in arrivals) == [0, 1]  # two agents, two node ranks
        # a later stage on the same machines: the worker node serves the run's next session too
        state = three.state_dict()
        three.close()
        again = ParallelTrainer(
            work,
            CFG,
            workers=3,
            threads=1,
            batch_size=48,
            seed=3,
            rendezvous=rdzv,
            source=WorkloadSpec(name="mnist1d", samples=1000, seed=0),
        )
        again.load_state_dict(state)
        for _ in range(2):
            assert one.step() == pytest.approx(again.step(), rel=1e-5)
        params = [torch.cat([p.detach().reshape(-1) for p in t.model.parameters()]) for t in (one, again)]
        assert torch.allclose(*params, atol=1e-5)
        again.close()
        rdzv.close()  # the other machine's 'paretrain worker' ends with the run
        assert node.wait(timeout=60) == 0
    finally:
        three.close()
        if again is not None:
            again.close()
        if node.poll() is None:
            node.kill()
            node.wait()


def _two_worker_plan(stage_steps: int, **runtime: object):
    plan = with_spec(
        make_test_plan(tiny_spec(hardware={"allow": ["local/cpu-1"], "catalog": "none"})),
        runtime={
            "eval_every_samples": 400,
            "checkpoint_every_s": 0.2,
            "keep_checkpoints": 2,
            "adapt": False,
            **runtime,
        },
    )
    cand = plan.candidate("cheapest")
    first = cand.stages[0]
    stages = (
        replace(
            first,
            hardware="local/cpu-1",
            workers=2,
            instances=2,
            batch_size=32,
            samples=stage_steps * 64,
            steps=stage_steps,
        ),  # a local worker is an instance
        *(replace(s, hardware="local/cpu-1", workers=1, batch_size=64) for s in cand.stages[1:]),
    )
    cand = replace(cand, stages=stages)
    return replace(plan, candidates=tuple(cand if c.id == cand.id else c for c in plan.candidates)), cand


def _kill_helper_after(ex: Executor, steps: int, killed: list[int]) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        rdzv = getattr(getattr(ex, "group", None), "rendezvous", None)
        trainer = getattr(getattr(ex, "group", None), "trainer", None)
        if (
            rdzv is not None
            and trainer is not None
            and getattr(trainer, "steps", 0) >= steps
            and rdzv.store.check(["paretrain/arrival/1"])
        ):
            pid = int(json.loads(rdzv.store.get("paretrain/arrival/1"))["pid"])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.005)


@pytest.mark.slow
def test_a_helper_killed_mid_stage_rolls_back_to_the_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("PARETRAIN_RDZV_TIMEOUT_S", "60")
    monkeypatch.setenv("PARETRAIN_COLLECTIVE_TIMEOUT_S", "30")
    plan, cand = _two_worker_plan(40, eval_every_samples=2000)
    ex = Executor(plan, cand, workdir=tmp_path, run_id="kill")
    killed: list[int] = []
    threading.Thread(target=_kill_helper_after, args=(ex, 4, killed), daemon=True).start()
    result = ex.run()
    assert killed, "the helper was never killed"
    names = [e["event"] for e in result.events]
    assert "worker_lost" in names and "workers_restarted" in names, names
    restarted = next(e for e in result.events if e["event"] == "workers_restarted")
    assert restarted["lost_usd"] > 0 and restarted["lost_s"] > 0
    charges = list(read_charges(tmp_path / ".paretrain" / "ledger" / "kill.jsonl"))
    assert any(c.get("event") == "workers_restarted" and c.get("lost_usd", 0) > 0 for c in charges)
    assert result.status == "target"
    assert result.cost_usd <= result.budget_usd
    # both processes are charged for every second of stage 0: rendezvous, training, the loss
    price_s = plan.offer("local/cpu-1").price_usd_per_h / 3600.0
    held = [c for c in charges if c["stage"] == "stage0" and c["kind"] == "compute"]
    assert held and all(c["usd"] == pytest.approx(2 * price_s * c["seconds"]) for c in held)
    assert sum(c["seconds"] for c in held if c.get("step") == 1) > 0.5  # the first step waited for the group
    rdzv_restart = [c for c in charges if c.get("event") == "worker_lost"]
    assert len(rdzv_restart) == 1


@pytest.mark.slow
def test_a_plans_two_worker_stage_runs_through_paretrain_run(tmp_path):
    plan, cand = _two_worker_plan(5)
    (tmp_path / "plan.json").write_text(plan_to_json(plan))
    out = paretrain(tmp_path, "run", "plan.json", "--candidate", cand.id, "--no-track", "--format", "json")
    assert out.returncode == 0, out.stderr
    events = [
        json.loads(line)
        for line in next((tmp_path / ".paretrain" / "runs").iterdir())
        .joinpath("events.jsonl")
        .read_text()
        .splitlines()
    ]
    assert [e["workers"] for e in events if e["event"] == "workers"][:2] == [2, 1]


@pytest.mark.slow
def test_a_machine_that_never_joins_stops_the_run_with_exit_3(tmp_path, monkeypatch):
    plan, cand = _two_worker_plan(5)
    (tmp_path / "plan.json").write_text(plan_to_json(plan))
    monkeypatch.setenv("PARETRAIN_NNODES", "2")  # the stage's second worker is another machine's
    monkeypatch.setenv("PARETRAIN_RDZV_TIMEOUT_S", "3")
    out = paretrain(tmp_path, "run", "plan.json", "--candidate", cand.id, "--no-track")
    assert out.returncode == 3, out.stderr
    assert (
        "never joined" in out.stderr
        and "missing 1 machine(s) running 'paretrain worker --rdzv-endpoint" in out.stderr
    ), out.stderr
    ledger = next((tmp_path / ".paretrain" / "ledger").glob("*.jsonl"))
    charges = list(read_charges(ledger))
    wait = next(c for c in charges if c.get("what") == "rendezvous")
    price_s = plan.offer("local/cpu-1").price_usd_per_h / 3600.0
    assert wait["seconds"] >= 3.0
    assert wait["usd"] == pytest.approx(price_s * wait["seconds"])  # one instance: the run's own process
    assert ledger_total(tmp_path, ledger.stem) <= plan.spec.budget.train_usd


@pytest.mark.slow
def test_a_helper_lost_past_max_restarts_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PARETRAIN_MAX_RESTARTS", "0")
    plan, cand = _two_worker_plan(40, eval_every_samples=2000)
    ex = Executor(plan, cand, workdir=tmp_path, run_id="past")
    killed: list[int] = []
    threading.Thread(target=_kill_helper_after, args=(ex, 4, killed), daemon=True).start()
    with pytest.raises(BudgetExhausted, match="past PARETRAIN_MAX_RESTARTS=0") as err:
        ex.run()
    result = err.value.result
    assert killed and result.status == "workers"
    assert result.cost_usd <= result.budget_usd
    names = [e["event"] for e in result.events]
    assert names.index("worker_lost") < names.index("workers_restarted") < names.index("workers_unavailable")


@pytest.mark.slow
def test_the_planners_all_reduce_is_measured_through_the_launcher():
    from paretrain.runtime.train.distributed import allreduce_timing

    seconds, start_s, contention = allreduce_timing(2, 1 << 16, repeats=5)  # rank 1 launched by the agent
    assert seconds > 0.0  # how long is the machine's business: the benchmark reports it
    assert start_s > 0.2  # the agent and the helper import torch before the group forms
    assert 1.0 <= contention < math.inf  # two one-thread processes computing at once, over one alone
