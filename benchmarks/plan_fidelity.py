"""Plan fidelity: plan on this machine's CPU, run the cheapest, knee and fastest candidates
for real, and compare predicted with realized cost, wall time and accuracy.

Goals, per built-in workload and device count (processes a stage runs on), over at least 18
runs: the realized cost and wall time fall inside the plan's 80% interval (P10-P90) in 70-90% of
runs, and the P50's mean absolute percentage error is 10% or less. Cases: ``mnist1d``
(one process), ``mnist1d-dp`` (stages may run data parallel on two processes) and
``stdlib_lm`` (the byte-level GPT on the standard library's source). Each case is planned
``--rounds`` times (default 3) from a fresh profile, so that one lucky or unlucky profile does
not decide the result, and each of its cheapest, knee and fastest candidates runs ``--repeats``
times (default 2): 18 runs per case. The spread between repeats of one candidate is this
machine's noise floor: no plan made before the runs can predict them closer than that.

The specs (``benchmarks/specs/fidelity*.yaml``) plan runs of 5-30 s, where training rather than
start-up decides the error. Each wall-time error is split in two: ``samples_ratio`` (realized
over predicted samples: the convergence model) and ``speed_ratio`` (realized over predicted
seconds per sample: the step-time model and this machine's speed on the day). Every prediction
is the plan's own (cost, wall time, their intervals and each stage's step and evaluation
seconds, from ``paretrain.planner.program.stagecost`` and ``paretrain.planner.measure.uncertainty``); the benchmark recomputes none.

    .venv/bin/python benchmarks/plan_fidelity.py [--case mnist1d] [--rounds 3] [--repeats 2]
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paretrain.planner.measure.profile_file import profile_from_json
from paretrain.planner.measure.throughput import speed_factors


def sh(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paretrain.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


CASES = {
    "mnist1d": ROOT / "benchmarks" / "specs" / "fidelity.yaml",
    "mnist1d-dp": ROOT / "benchmarks" / "specs" / "fidelity_dp.yaml",
    "stdlib_lm": ROOT / "benchmarks" / "specs" / "fidelity_lm.yaml",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--case",
        action="append",
        choices=sorted(CASES),
        help="which specs to run (repeatable; default: all): " + ", ".join(sorted(CASES)),
    )
    ap.add_argument("--spec", help="one spec file instead of the built-in cases")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cases = {"custom": Path(args.spec)} if args.spec else {k: CASES[k] for k in (args.case or sorted(CASES))}
    out = ROOT / "benchmarks" / "results" / "plan_fidelity.json"
    rows: list[dict] = []
    plans: list[str] = []
    for case, spec in cases.items():
        for rnd in range(args.rounds):
            plan, round_rows = one_round(str(spec), args.repeats, rnd, case)
            plans.append(plan["fingerprint"])
            rows.extend(round_rows)
            _write(out, cases, rows, plans)  # after every round: a crash or a kill loses one round at most
    summary, cov = _write(out, cases, rows, plans)
    print(
        f"{'workload':<12} {'devices':>7} {'runs':>4} {'wall in P10-P90':>15} {'cost in P10-P90':>15} "
        f"{'wall P50 MAPE':>13} {'cost P50 MAPE':>13}  goal (>=18 runs, 70-90%, <=10%)"
    )
    for g in cov:
        print(
            f"{g['workload']:<12} {g['devices']:>7} {g['runs']:>4} {g['wall_s_coverage']:>15.0%} "
            f"{g['cost_usd_coverage']:>15.0%} {g['wall_s_p50_mape']:>13.1%} {g['cost_usd_p50_mape']:>13.1%}  "
            f"{'met' if g['met'] else 'NOT met'}"
        )
    print(
        f"all runs: cost MAPE {summary['cost_mape']:.1%}, wall MAPE {summary['wall_mape']:.1%}, metric "
        f"error mean {summary['acc_mean_abs_err_pts']:.2f} / max {summary['acc_max_abs_err_pts']:.2f} (points of "
        f"accuracy, or the metric's units x100), "
        f"realized/predicted samples median {summary['samples_median_ratio']:.2f}, seconds per sample "
        f"{summary['speed_median_ratio']:.2f}; repeats of one candidate differ by {summary['repeat_spread_median']:.1%} "
        f"in wall time (median; max {summary['repeat_spread_max']:.1%})"
    )
    print(f"wrote {out}")


def _write(out: Path, cases: dict, rows: list[dict], plans: list[str]) -> tuple[dict, list[dict]]:
    """Write the result file: this invocation's rows with an earlier result's other cases."""
    all_rows, all_plans = _merge(out, cases, rows, plans)
    summary, cov = summarize(all_rows), coverage(all_rows)
    out.write_text(
        json.dumps(
            {
                "cases": sorted({r["case"] for r in all_rows}),
                "plans": all_plans,
                "rows": all_rows,
                "coverage": cov,
                "summary": summary,
            },
            indent=1,
        )
        + "\n"
    )
    return summary, cov


def _merge(out: Path, cases: dict, rows: list[dict], plans: list[str]) -> tuple[list[dict], list[str]]:
    """This invocation's rows, and an earlier result's rows of the cases it did not run."""
    if not out.exists():
        return rows, plans
    try:
        old = json.loads(out.read_text())
    except ValueError:
        return rows, plans
    kept = [r for r in old.get("rows", []) if r.get("case") and r["case"] not in cases]
    return kept + rows, list(dict.fromkeys(list(old.get("plans", [])) + plans))


def one_round(spec: str, repeats: int, rnd: int, workload: str) -> tuple[dict, list[dict]]:
    """Profile and plan from scratch in a fresh folder, then run each picked candidate."""
    work = Path(tempfile.mkdtemp(prefix="paretrain-fidelity-"))
    data = yaml.safe_load(Path(spec).read_text())
    # each round its own seed (data, initialization, batch order): three independent plans whose
    # convergence errors differ, not one plan's error counted three times
    data["workload"]["seed"] = int(data["workload"].get("seed") or 0) + rnd
    (work / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    p = sh(work, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    if p.returncode:
        sys.exit(p.stderr)
    plan = json.loads((work / "plan.json").read_text())
    profile_file = next((work / ".paretrain" / "profiles").glob("*.json"))
    profile = json.loads(profile_file.read_text())
    measured = {sp["hardware"]: sp for sp in profile["steps"]}
    calib = speed_factors(profile_from_json(profile_file.read_text(), str(profile_file)))  # the plan's own
    print(
        f"round {rnd}: profile "
        + "; ".join(
            f"{h} steps "
            + " ".join(f"b{x['batch_size']} {x['step_s'] * 1e3:.2f}" for x in sp["samples"])
            + f" ms, eval {sp['eval_s'] * 1e3:.1f} ms"
            for h, sp in sorted(measured.items())
        )
        + "; convergence runs stepped "
        + ", ".join(f"{k} x{v:.3f}" for k, v in sorted(calib.items()))
        + " the timed passes"
        + "".join(
            f"; {x['workers']} processes: all-reduce of {x['bytes'] >> 10} KiB "
            f"{x['seconds'] * 1e3:.2f} ms, contention x{x['contention']:.2f}"
            for x in profile.get("sync", [])
        ),
        flush=True,
    )
    rows = []
    for which in ("cheapest", "knee", "fastest"):
        for rep in range(repeats):
            r = sh(work, "run", "plan.json", "--candidate", which, "--no-track", "--approve")
            status = json.loads(
                sorted((work / ".paretrain" / "runs").glob("*/status.json"), key=lambda f: f.stat().st_mtime)[
                    -1
                ].read_text()
            )
            cid = status["candidate"]
            cand = next(c for c in plan["pareto"] if c["id"] == cid)
            pred = cand["predicted"]
            row = {
                "round": rnd,
                "case": workload,
                "which": which,
                "candidate": cid,
                "repeat": rep,
                "exit": r.returncode,
                "status": status["status"],
                "pred_cost_usd": pred["cost_usd"],
                "cost_usd": status["cost_usd"],
                "pred_wall_s": pred["wall_s"],
                "wall_s": status["wall_s"],
                "pred_accuracy": pred["level"],
                "accuracy": status[plan["spec"].get("target", {}).get("metric") or "val_accuracy"],
                "pred_samples": sum(s["samples"] for s in cand["stages"]),
                "samples": status["samples"],
            }
            row.update(_realized_steps(work, status["run_id"], cand))
            row["conv_speed"] = calib
            row["contention"] = sorted(x["contention"] for x in profile.get("sync", []))
            row["cost_err"] = (row["pred_cost_usd"] - row["cost_usd"]) / row["cost_usd"]
            row["wall_err"] = (row["pred_wall_s"] - row["wall_s"]) / row["wall_s"]
            row["acc_err_pts"] = (row["accuracy"] - row["pred_accuracy"]) * 100
            row["samples_ratio"] = row["samples"] / row["pred_samples"]
            row.update(_interval_row(cand, row, workload))
            row["speed_ratio"] = (row["wall_s"] / row["samples"]) / (row["pred_wall_s"] / row["pred_samples"])
            rows.append(row)
            print(
                f"{which:>8} {cid} #{rep} {row['status']:>7} [{row['stages']}; step x{row['step_ratio']:.2f}, "
                f"eval x{row['eval_ratio']:.2f}]: cost {row['pred_cost_usd']:.3g} -> "
                f"{row['cost_usd']:.3g} ({row['cost_err']:+.1%}); wall {row['pred_wall_s']:.2f} -> "
                f"{row['wall_s']:.2f} s ({row['wall_err']:+.1%}); acc {row['pred_accuracy']:.3f} -> "
                f"{row['accuracy']:.3f}; samples x{row['samples_ratio']:.2f}, s/sample x{row['speed_ratio']:.2f}",
                flush=True,
            )
    shutil.rmtree(work, ignore_errors=True)
    return plan, rows


def _interval_row(cand: dict, row: dict, workload: str) -> dict:
    """Where the realized cost and wall time fell against the plan's P10-P50-P90 (the 80%
    interval), and the P50's errors; ``devices`` is the most processes a stage of it runs on."""
    out = {"workload": workload, "devices": max(st["workers"] for st in cand["stages"])}
    pred = cand["predicted"]
    for name, real in (("cost_usd", row["cost_usd"]), ("wall_s", row["wall_s"])):
        iv = pred.get(f"{name}_interval")
        if iv is None:
            continue
        out[f"{name}_p10"], out[f"{name}_p50"], out[f"{name}_p90"] = iv["p10"], iv["p50"], iv["p90"]
        out[f"{name}_inside"] = iv["p10"] <= real <= iv["p90"]
        out[f"{name}_p50_err"] = (iv["p50"] - real) / real if real else float("nan")
    return out


def coverage(rows: list[dict]) -> list[dict]:
    """Per workload and device count: the runs, the share inside the 80% interval (goal 70-90%)
    and the P50's mean absolute percentage error (goal 10% or less), for cost and wall time."""
    out = []
    for key in sorted({(r["workload"], r["devices"]) for r in rows if "wall_s_inside" in r}):
        group = [r for r in rows if (r["workload"], r["devices"]) == key and "wall_s_inside" in r]
        g = {"workload": key[0], "devices": key[1], "runs": len(group)}
        for name in ("cost_usd", "wall_s"):
            g[f"{name}_coverage"] = mean(1.0 if r[f"{name}_inside"] else 0.0 for r in group)
            g[f"{name}_p50_mape"] = mean(abs(r[f"{name}_p50_err"]) for r in group)
        g["met"] = (
            g["runs"] >= 18
            and all(0.7 <= g[f"{n}_coverage"] <= 0.9 for n in ("cost_usd", "wall_s"))
            and all(g[f"{n}_p50_mape"] <= 0.10 for n in ("cost_usd", "wall_s"))
        )
        out.append(g)
    return out


def _realized_steps(work: Path, run_id: str, cand: dict) -> dict:
    """The run's own step and evaluation times from its ledger, each over the plan's prediction
    for its stage (``step_s``, ``eval_s``: paretrain.planner.program.stagecost, the model the plan and every
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
    return {
        "stages": " | ".join(
            f"{st['hardware'].split('/')[-1]} b{st['batch_size']}"
            + (f"x{st['workers']}" if st["workers"] > 1 else "")
            for st in cand["stages"]
        ),
        "step_ratio": median(step_ratios) if step_ratios else float("nan"),
        "eval_ratio": mean(evals) / mean(pred_eval) if evals and pred_eval else float("nan"),
    }


def summarize(rows: list[dict]) -> dict:
    spreads = []
    for key in {(r["case"], r["round"], r["which"]) for r in rows}:
        walls = [r["wall_s"] for r in rows if (r["case"], r["round"], r["which"]) == key]
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
    return summary


if __name__ == "__main__":
    main()
