"""Search quality: the best validation accuracy found per model family on MNIST-1D at equal
search spend, over several seeds, for three searches driven by the same training code:

- ``asha``: paretrain's search (``search.fidelity: asha``): trials promoted at rungs a factor 3
  apart by their learning curve's extrapolated accuracy at full fidelity, with its interval;
- ``median``: the older rule (``search.fidelity: median``): a trial below the median of finished
  trials at the same evaluation is cut;
- ``optuna``: plain Optuna on the single accuracy objective: ``TPESampler`` and
  ``HyperbandPruner`` (reduction factor 3, from one evaluation to the trial's samples), each trial
  trained by the same lab (``paretrain.runtime.train.lab_trial.run_trial``) on the same search
  space, its evaluations reported to the pruner.

Each search spends at most ``--envelope`` dollars (paretrain's searches hold it in their
envelope; the plain loop stops when the next trial could not fit what is left). A family's
figure is the best accuracy *measured* by any of its trials (cut short or not; never an
extrapolation), so the three are judged alike. The published MNIST-1D table (Greydanus 2020):
CNN 0.94, GRU 0.91, MLP 0.68.

    .venv/bin/python benchmarks/search_quality.py [--method asha] [--seeds 5] [--first-seed 0] \
        [--envelope 0.02]

Prints a table (median over seeds per method and family, and every seed) and writes
``benchmarks/results/search_quality.json`` (runs merge across invocations by method and seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna

from paretrain.planner.inputs.catalog import local_offers
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.search.faults import TrialAborted
from paretrain.planner.search.narrowed import search_space, suggest_config
from paretrain.runtime.money.ledger import Ledger
from paretrain.runtime.pipeline import Workspace, search_spec
from paretrain.runtime.train.devices import local_devices
from paretrain.runtime.train.lab_trial import run_trial
from paretrain.runtime.train.torch_lab import TorchLab
from paretrain.runtime.train.trainer import warm_up_torch
from paretrain.runtime.train.workloads import WORKLOADS, load_workload, prepare_data

RESULTS = ROOT / "benchmarks" / "results" / "search_quality.json"
PUBLISHED = {"cnn": 0.94, "gru": 0.91, "mlp": 0.68}
METHODS = ("asha", "median", "optuna")


def make_spec(work: Path, method: str, seed: int, envelope: float, trial_samples: int) -> Any:
    data = {
        "name": "search-quality",
        "workload": {"name": "mnist1d", "samples": 10000, "seed": 0},
        "target": {"goal": 0.8, "max_samples": trial_samples},
        "budget": {"total_usd": 1.0, "envelopes": {"search": envelope}},
        "deadline_s": 36000,
        "search": {
            "trials": 1000,  # the envelope ends the search
            "sampler": "tpe",
            "seed": seed,
            "storage": f"sqlite:///{work / 'optuna.db'}",
            "trial_samples": trial_samples,
            "fidelity": "median" if method == "median" else "asha",
        },
        "runtime": {"eval_every_samples": 2000},
    }
    return parse_spec(data, "search_quality", WORKLOADS)


def paretrain_search(spec: Any, work: Path) -> list[dict]:
    """paretrain's own search; each trial's family, measured curve and spend."""
    search_spec(spec, Workspace(work))
    study = optuna.load_study(study_name="search-quality", storage=spec.search.storage)
    out = []
    for t in sorted(study.trials, key=lambda t: t.number):
        if "config" not in t.user_attrs:
            continue  # failed before it trained
        out.append(
            {
                "trial": t.number,
                "family": t.user_attrs["config"]["family"],
                "curve": t.user_attrs.get("curve", []),  # none: failed (its spend still counts)
                "spend_usd": t.user_attrs.get("spend_usd", 0.0),
                "cut": bool(t.user_attrs.get("cut_short", False)),
            }
        )
    return out


def plain_optuna(spec: Any, work: Path, seed: int, envelope: float) -> list[dict]:
    """TPE + Hyperband on the accuracy alone, trials trained by paretrain's lab."""
    workload = prepare_data(load_workload(spec.workload, work / "cache"))
    warm_up_torch()
    prices = {
        o.id: o.price_usd_per_h for o in local_offers(local_devices(), replace(spec.hardware, local="auto"))
    }
    ledger = Ledger(work / "ledger.jsonl", "search-quality-optuna")
    lab = TorchLab(workload, prices_usd_per_h=prices, ledger=ledger, seed=seed, metric=spec.target.metric_obj)
    space = search_space(workload.info, spec.search.space, "search_quality")
    samples, every = spec.search.trial_samples, spec.runtime.eval_every_samples
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=every, max_resource=samples, reduction_factor=3),
    )
    out: list[dict] = []
    spent, dearest = 0.0, 0.0
    try:
        while envelope - spent > dearest:  # the next trial could finish on what is left
            trial = study.ask()
            config = suggest_config(trial, space)

            def should_stop(n: int, score: float, _i: int, trial: optuna.Trial = trial) -> bool:
                trial.report(score, n)
                return trial.should_prune()

            try:
                run = run_trial(lab, config, samples, every, envelope - spent, should_stop, name="mnist1d")
            except TrialAborted as aborted:  # the envelope ran out mid-trial: the search ends there
                spent += aborted.spend_usd
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                out.append(
                    {
                        "trial": trial.number,
                        "family": config.family,
                        "curve": [],
                        "spend_usd": aborted.spend_usd,
                        "cut": True,
                    }
                )
                break
            spent += run.spend_usd
            if not run.curve:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            if run.stopped:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, max(v for _, v in run.curve))
                dearest = max(dearest, run.spend_usd)
            out.append(
                {
                    "trial": trial.number,
                    "family": config.family,
                    "curve": [list(p) for p in run.curve],
                    "spend_usd": run.spend_usd,
                    "cut": run.stopped or run.budget_hit,
                }
            )
            if run.budget_hit:
                break
    finally:
        ledger.close()
    return out


def one(method: str, seed: int, envelope: float, trial_samples: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="paretrain-search-") as tmp:
        work = Path(tmp)
        spec = make_spec(work, method, seed, envelope, trial_samples)
        t0 = time.perf_counter()
        trials = (
            plain_optuna(spec, work, seed, envelope) if method == "optuna" else paretrain_search(spec, work)
        )
        wall = time.perf_counter() - t0
    best: dict[str, float] = {}
    for t in trials:
        if t["curve"]:
            top = max(v for _, v in t["curve"])
            best[t["family"]] = max(best.get(t["family"], 0.0), top)
    return {
        "method": method,
        "seed": seed,
        "envelope_usd": envelope,
        "trial_samples": trial_samples,
        "wall_s": round(wall, 1),
        "spent_usd": sum(t["spend_usd"] for t in trials),
        "trials": len(trials),
        "cut": sum(t["cut"] for t in trials),
        "best": best,
        "per_trial": [{k: t[k] for k in ("trial", "family", "spend_usd", "cut")} for t in trials],
    }


def summary(runs: list[dict]) -> list[dict]:
    out = []
    for method, envelope in sorted({(r["method"], r["envelope_usd"]) for r in runs}):
        got = [r for r in runs if (r["method"], r["envelope_usd"]) == (method, envelope)]
        families = sorted({f for r in got for f in r["best"]})
        out.append(
            {
                "method": method,
                "envelope_usd": envelope,
                "seeds": len(got),
                "median": {f: median(r["best"].get(f, 0.0) for r in got) for f in families},
                "per_seed": {
                    f: [r["best"].get(f) for r in sorted(got, key=lambda r: r["seed"])] for f in families
                },
                "trials_median": median(r["trials"] for r in got),
                "wall_s_median": median(r["wall_s"] for r in got),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", action="append", choices=METHODS)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="run seeds from this one on (earlier ones are kept)"
    )
    ap.add_argument("--envelope", type=float, default=0.02, help="search spend per run, USD")
    ap.add_argument("--trial-samples", type=int, default=40000)
    args = ap.parse_args()
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs = old.get("runs", [])  # an older layout (one study's trials) starts afresh
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for method in args.method or METHODS:
            runs = [
                r
                for r in runs
                if (r["method"], r["seed"], r["envelope_usd"]) != (method, seed, args.envelope)
            ]
            row = one(method, seed, args.envelope, args.trial_samples)
            runs.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "per_trial"}), flush=True)
            RESULTS.write_text(
                json.dumps({"published": PUBLISHED, "runs": runs, "summary": summary(runs)}, indent=1) + "\n"
            )
    print(f"{'method':7s} {'envelope':>8s} {'seeds':>5s} family  median  per seed")
    for s in summary(runs):
        for f, m in s["median"].items():
            seeds = " ".join("-" if v is None else f"{v:.3f}" for v in s["per_seed"][f])
            pub = f" (published {PUBLISHED[f]:.2f})" if f in PUBLISHED else ""
            print(f"{s['method']:7s} {s['envelope_usd']:8.4f} {s['seeds']:5d} {f:6s} {m:.3f}   {seeds}{pub}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
