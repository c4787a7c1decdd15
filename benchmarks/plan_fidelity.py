"""Plan fidelity: plan on this machine's CPU, run the cheapest, knee and fastest candidates
for real, and compare predicted with realized cost, wall time and accuracy.

Goals: mean absolute percentage error of cost and of wall time <= 10%; accuracy within
1.5 points. Each candidate runs ``--repeats`` times (default 2); the table shows every run.
``--rounds`` (default 2) repeats the whole thing from a fresh profile and plan, so that one
lucky or unlucky profile does not decide the result; the summary pools every run and gives
each round's MAPE too. The spread between repeats of one candidate is this machine's noise
floor: no plan made before the runs can predict them closer than that.

The default spec (``benchmarks/specs/fidelity.yaml``) plans runs of 5-30 s: the demo's example
plans runs of about a second, where start-up, not training, decides the error. Each wall-time
error is split in two: ``samples_ratio`` (realized over predicted samples: the convergence
model) and ``speed_ratio`` (realized over predicted seconds per sample: the step-time model and
this machine's speed on the day). Every prediction is the plan's own (cost, wall time and each
stage's step and evaluation seconds, from ``planner.stagecost``, the one cost model of the plan
and of every replan); the benchmark recomputes none.

    .venv/bin/python benchmarks/plan_fidelity.py [--spec benchmarks/specs/fidelity.yaml] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean, median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sh(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paretrain.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "benchmarks" / "specs" / "fidelity.yaml"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rows, plans = [], []
    for rnd in range(args.rounds):
        plan, round_rows = one_round(args.spec, args.repeats, rnd)
        plans.append(plan["fingerprint"])
        rows.extend(round_rows)
    summary = summarize(rows)
    rounds = [summarize([r for r in rows if r["round"] == k]) for k in range(args.rounds)]
    for k, sm in enumerate(rounds):
        print(f"round {k}: cost MAPE {sm['cost_mape']:.1%}, wall MAPE {sm['wall_mape']:.1%}, seconds per "
              f"sample x{sm['speed_median_ratio']:.2f}")
    print(f"all rounds: cost MAPE {summary['cost_mape']:.1%}, wall MAPE {summary['wall_mape']:.1%}, accuracy "
          f"error mean {summary['acc_mean_abs_err_pts']:.2f} / max {summary['acc_max_abs_err_pts']:.2f} pts, "
          f"realized/predicted samples median {summary['samples_median_ratio']:.2f}, seconds per sample "
          f"{summary['speed_median_ratio']:.2f}; repeats of one candidate differ by {summary['repeat_spread_median']:.1%} "
          f"in wall time (median; max {summary['repeat_spread_max']:.1%}) "
          f"({'met' if summary['met'] else 'NOT met'})")
    out = ROOT / "benchmarks" / "results" / "plan_fidelity.json"
    out.write_text(json.dumps({"spec": args.spec, "plans": plans, "rows": rows, "rounds": rounds,
                               "summary": summary}, indent=1) + "\n")
    print(f"wrote {out}")


def one_round(spec: str, repeats: int, rnd: int) -> tuple[dict, list[dict]]:
    """Profile and plan from scratch in a fresh folder, then run each picked candidate."""
    work = Path(tempfile.mkdtemp(prefix="paretrain-fidelity-"))
    shutil.copy(spec, work / "spec.yaml")
    p = sh(work, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    if p.returncode:
        sys.exit(p.stderr)
    plan = json.loads((work / "plan.json").read_text())
    profile = json.loads(next((work / ".paretrain" / "profiles").glob("*.json")).read_text())
    measured = {sp["hardware"]: sp for sp in profile["steps"]}
    print(f"round {rnd}: profile " + "; ".join(
        f"{h} steps " + " ".join(f"b{x['batch_size']} {x['step_s'] * 1e3:.2f}" for x in sp["samples"])
        + f" ms, eval {sp['eval_s'] * 1e3:.1f} ms" for h, sp in sorted(measured.items())), flush=True)
    rows = []
    for which in ("cheapest", "knee", "fastest"):
        for rep in range(repeats):
            r = sh(work, "run", "plan.json", "--candidate", which, "--no-track", "--approve")
            status = json.loads(sorted((work / ".paretrain" / "runs").glob("*/status.json"),
                                       key=lambda f: f.stat().st_mtime)[-1].read_text())
            cid = status["candidate"]
            cand = [c for c in plan["pareto"] if c["id"] == cid][0]
            pred = cand["predicted"]
            row = {"round": rnd, "which": which, "candidate": cid, "repeat": rep, "exit": r.returncode,
                   "status": status["status"], "pred_cost_usd": pred["cost_usd"],
                   "cost_usd": status["cost_usd"], "pred_wall_s": pred["wall_s"], "wall_s": status["wall_s"],
                   "pred_accuracy": pred["accuracy"], "accuracy": status["val_accuracy"],
                   "pred_samples": sum(s["samples"] for s in cand["stages"]), "samples": status["samples"]}
            row.update(_realized_steps(work, status["run_id"], cand))
            row["cost_err"] = (row["pred_cost_usd"] - row["cost_usd"]) / row["cost_usd"]
            row["wall_err"] = (row["pred_wall_s"] - row["wall_s"]) / row["wall_s"]
            row["acc_err_pts"] = (row["accuracy"] - row["pred_accuracy"]) * 100
            row["samples_ratio"] = row["samples"] / row["pred_samples"]
            row["speed_ratio"] = (row["wall_s"] / row["samples"]) / (row["pred_wall_s"] / row["pred_samples"])
            rows.append(row)
            print(f"{which:>8} {cid} #{rep} {row['status']:>7} [{row['stages']}; step x{row['step_ratio']:.2f}, "
                  f"eval x{row['eval_ratio']:.2f}]: cost {row['pred_cost_usd']:.3g} -> "
                  f"{row['cost_usd']:.3g} ({row['cost_err']:+.1%}); wall {row['pred_wall_s']:.2f} -> "
                  f"{row['wall_s']:.2f} s ({row['wall_err']:+.1%}); acc {row['pred_accuracy']:.3f} -> "
                  f"{row['accuracy']:.3f}; samples x{row['samples_ratio']:.2f}, s/sample x{row['speed_ratio']:.2f}",
                  flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return plan, rows


def _realized_steps(work: Path, run_id: str, cand: dict) -> dict:
    """The run's own step and evaluation times from its ledger, each over the plan's prediction
    for its stage (``step_s``, ``eval_s``: planner.stagecost, the model the plan and every
    replan cost stages with)."""
    charges = [json.loads(line) for line in (work / ".paretrain" / "ledger" / f"{run_id}.jsonl").open()]
    by_stage: dict[str, list[float]] = {}
    evals: list[float] = []
    for c in charges:
        if c.get("what") == "train":
            by_stage.setdefault(c["stage"], []).append(c["seconds"])
        elif c.get("what") == "eval":
            evals.append(c["seconds"])
    step_ratios, pred_eval = [], []
    for k, st in enumerate(cand["stages"]):
        times = by_stage.get(f"stage{k}", [])
        if times and st["step_s"] > 0:
            step_ratios.append(mean(times) / st["step_s"])
        if st["eval_s"] > 0:
            pred_eval.append(st["eval_s"])
    return {"stages": " | ".join(f"{st['hardware'].split('/')[-1]} b{st['batch_size']}"
                                 + (f"x{st['workers']}" if st["workers"] > 1 else "") for st in cand["stages"]),
            "step_ratio": median(step_ratios) if step_ratios else float("nan"),
            "eval_ratio": mean(evals) / mean(pred_eval) if evals and pred_eval else float("nan")}


def summarize(rows: list[dict]) -> dict:
    spreads = []
    for key in {(r["round"], r["which"]) for r in rows}:
        walls = [r["wall_s"] for r in rows if (r["round"], r["which"]) == key]
        if len(walls) > 1:
            spreads.append((max(walls) - min(walls)) / mean(walls))
    summary = {
        "runs": len(rows),
        "cost_mape": mean(abs(r["cost_err"]) for r in rows),
        "wall_mape": mean(abs(r["wall_err"]) for r in rows),
        "acc_mean_abs_err_pts": mean(abs(r["acc_err_pts"]) for r in rows),
        "acc_max_abs_err_pts": max(abs(r["acc_err_pts"]) for r in rows),
        "samples_median_ratio": median(r["samples_ratio"] for r in rows),
        "speed_median_ratio": median(r["speed_ratio"] for r in rows),
        "repeat_spread_median": median(spreads) if spreads else 0.0,
        "repeat_spread_max": max(spreads) if spreads else 0.0,
    }
    summary["met"] = summary["cost_mape"] <= 0.10 and summary["wall_mape"] <= 0.10 and \
        summary["acc_max_abs_err_pts"] <= 1.5
    return summary


if __name__ == "__main__":
    main()
