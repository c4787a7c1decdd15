"""Plan fidelity: plan on this machine's CPU, run the cheapest, knee and fastest candidates
for real, and compare predicted with realized cost, wall time and accuracy.

Goals: mean absolute percentage error of cost and of wall time <= 10%; accuracy within
1.5 points. Each candidate runs ``--repeats`` times (default 2); the table shows every run.

The default spec (``benchmarks/specs/fidelity.yaml``) plans runs of 5-30 s: the demo's example
plans runs of about a second, where start-up, not training, decides the error. Each wall-time
error is split in two: ``samples_ratio`` (realized over predicted samples: the convergence
model) and ``speed_ratio`` (realized over predicted seconds per sample: the step-time model and
this machine's speed on the day).

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
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="paretrain-fidelity-"))
    shutil.copy(args.spec, work / "spec.yaml")
    p = sh(work, "plan", "spec.yaml", "-o", "plan.json", "--no-track")
    if p.returncode:
        sys.exit(p.stderr)
    plan = json.loads((work / "plan.json").read_text())
    rows = []
    for which in ("cheapest", "knee", "fastest"):
        for rep in range(args.repeats):
            r = sh(work, "run", "plan.json", "--candidate", which, "--no-track", "--approve")
            status = json.loads(sorted((work / ".paretrain" / "runs").glob("*/status.json"),
                                       key=lambda f: f.stat().st_mtime)[-1].read_text())
            cid = status["candidate"]
            cand = [c for c in plan["pareto"] if c["id"] == cid][0]
            pred = cand["predicted"]
            row = {"which": which, "candidate": cid, "repeat": rep, "exit": r.returncode,
                   "status": status["status"], "pred_cost_usd": pred["cost_usd"],
                   "cost_usd": status["cost_usd"], "pred_wall_s": pred["wall_s"], "wall_s": status["wall_s"],
                   "pred_accuracy": pred["accuracy"], "accuracy": status["val_accuracy"],
                   "pred_samples": sum(s["samples"] for s in cand["stages"]), "samples": status["samples"]}
            row["cost_err"] = (row["pred_cost_usd"] - row["cost_usd"]) / row["cost_usd"]
            row["wall_err"] = (row["pred_wall_s"] - row["wall_s"]) / row["wall_s"]
            row["acc_err_pts"] = (row["accuracy"] - row["pred_accuracy"]) * 100
            row["samples_ratio"] = row["samples"] / row["pred_samples"]
            row["speed_ratio"] = (row["wall_s"] / row["samples"]) / (row["pred_wall_s"] / row["pred_samples"])
            rows.append(row)
            print(f"{which:>8} {cid} #{rep} {row['status']:>7}: cost {row['pred_cost_usd']:.3g} -> "
                  f"{row['cost_usd']:.3g} ({row['cost_err']:+.1%}); wall {row['pred_wall_s']:.2f} -> "
                  f"{row['wall_s']:.2f} s ({row['wall_err']:+.1%}); acc {row['pred_accuracy']:.3f} -> "
                  f"{row['accuracy']:.3f}; samples x{row['samples_ratio']:.2f}, s/sample x{row['speed_ratio']:.2f}",
                  flush=True)
    summary = {
        "cost_mape": mean(abs(r["cost_err"]) for r in rows),
        "wall_mape": mean(abs(r["wall_err"]) for r in rows),
        "acc_mean_abs_err_pts": mean(abs(r["acc_err_pts"]) for r in rows),
        "acc_max_abs_err_pts": max(abs(r["acc_err_pts"]) for r in rows),
        "samples_median_ratio": median(r["samples_ratio"] for r in rows),
        "speed_median_ratio": median(r["speed_ratio"] for r in rows),
    }
    summary["met"] = summary["cost_mape"] <= 0.10 and summary["wall_mape"] <= 0.10 and \
        summary["acc_max_abs_err_pts"] <= 1.5
    print(f"cost MAPE {summary['cost_mape']:.1%}, wall MAPE {summary['wall_mape']:.1%}, accuracy error "
          f"mean {summary['acc_mean_abs_err_pts']:.2f} / max {summary['acc_max_abs_err_pts']:.2f} pts, "
          f"realized/predicted samples median {summary['samples_median_ratio']:.2f}, seconds per sample "
          f"{summary['speed_median_ratio']:.2f} "
          f"({'met' if summary['met'] else 'NOT met'})")
    out = ROOT / "benchmarks" / "results" / "plan_fidelity.json"
    out.write_text(json.dumps({"spec": args.spec, "plan": plan["fingerprint"], "rows": rows,
                               "summary": summary}, indent=1) + "\n")
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
