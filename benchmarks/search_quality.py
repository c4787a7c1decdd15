"""Search quality: the best validation accuracy found per model family on MNIST-1D, against
the number of trials and the money the search spent.

Runs a real study (TPE by default) on this machine's CPU: 10,000 MNIST-1D samples, each trial
training up to 40,000 samples. Prints a table and writes benchmarks/results/search_quality.json.

    .venv/bin/python benchmarks/search_quality.py [--trials 40] [--sampler tpe]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.runtime.pipeline import Workspace, search_spec
from paretrain.runtime.train.workloads import WORKLOADS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--sampler", default="tpe", choices=["tpe", "nsga2", "gp"])
    ap.add_argument("--trial-samples", type=int, default=40000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="paretrain-search-"))
    data = {
        "name": "search-quality",
        "workload": {"name": "mnist1d", "samples": 10000, "seed": 0},
        "target": {"goal": 0.8, "max_samples": args.trial_samples},
        "budget": {"total_usd": 1.0, "envelopes": {"search": 0.5}},
        "deadline_s": 3600,
        "search": {
            "trials": args.trials,
            "sampler": args.sampler,
            "seed": 0,
            "storage": f"sqlite:///{work / 'optuna.db'}",
            "trial_samples": args.trial_samples,
        },
        "runtime": {"eval_every_samples": 2000},
    }
    spec = parse_spec(data, "search_quality", WORKLOADS)
    trials: list[dict] = []

    def progress(label: str, i: int, n: int) -> None:
        print(f"[{i}/{n}] {label}", flush=True)

    result = search_spec(spec, Workspace(work), progress=progress)
    import optuna

    study = optuna.load_study(study_name="search-quality", storage=f"sqlite:///{work / 'optuna.db'}")
    spent = 0.0
    for t in sorted(study.trials, key=lambda t: t.number):
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        spent += t.user_attrs.get("spend_usd", 0.0)
        cfg = t.user_attrs["config"]
        trials.append(
            {
                "trial": t.number,
                "family": cfg["family"],
                "config": cfg,
                "accuracy": t.values[0],
                "cost_usd": t.values[1],
                "latency_ms": t.values[2],
                "spent_usd": spent,
                "extrapolated": t.user_attrs.get("extrapolated", False),
            }
        )
    families = sorted({t["family"] for t in trials})
    marks = sorted({m for m in (10, 20, 30, 40, 60, 80, len(trials)) if m <= len(trials)})
    table = []
    for m in marks:
        seen = trials[:m]
        row = {"trials": m, "spent_usd": seen[-1]["spent_usd"]}
        for f in families:
            accs = [t["accuracy"] for t in seen if t["family"] == f and not t["extrapolated"]]
            row[f] = max(accs) if accs else None
        table.append(row)
    print(f"{'trials':>6} {'spent_usd':>10} " + " ".join(f"{f:>7}" for f in families))
    for row in table:
        print(
            f"{row['trials']:>6} {row['spent_usd']:>10.6f} "
            + " ".join(f"{row[f]:>7.4f}" if row[f] is not None else f"{'-':>7}" for f in families)
        )
    best = {
        f: max(
            (t for t in trials if t["family"] == f and not t["extrapolated"]),
            key=lambda t: t["accuracy"],
            default=None,
        )
        for f in families
    }
    for f, t in best.items():
        if t:
            print(f"best {f}: {t['accuracy']:.4f} (trial {t['trial']}: {t['config']})")
    out = ROOT / "benchmarks" / "results" / "search_quality.json"
    out.write_text(
        json.dumps(
            {
                "sampler": args.sampler,
                "trial_samples": args.trial_samples,
                "trials": trials,
                "table": table,
                "best": best,
                "study_spent_usd": result.spent_usd,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
