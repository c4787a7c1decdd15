"""The search half of ``benchmarks/scale_out.py``: trials per hour with 1, 2 and 4 workers.

For each worker count: a fresh database on a PostgreSQL server this benchmark starts itself
(``benchmarks._postgres``), then ``paretrain search SPEC --storage postgresql://... --workers N
--trials T --no-track`` as a user runs it, in a fresh folder. Two rates per count:

- ``trials_per_hour``: complete trials over the span from the first trial's start to the last
  one's end (Optuna's timestamps): the steady throughput of N workers on one study;
- ``trials_per_hour_wall``: the same trials over the command's whole wall time, process
  start-up (imports, torch warm-up, opening the study) included.

One worker trains in the command's own process on every core (as ``paretrain search`` does);
N workers share the cores, ``cores // N`` threads each (at least one).

The spec is the MNIST-1D search of the end-to-end tests (tiny MLPs and CNNs, a trial of
30,000 samples takes about a second), with an envelope far above what the trials spend, so
the count, not the money, ends each search. A machine shared with other work makes these
numbers noisy: rounds are interleaved and each count reports its median round.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["bench_search", "print_search"]


def _spec(trial_samples: int) -> dict[str, Any]:
    return {
        "name": "scale-out",
        "deadline_s": 3600,
        "workload": {"name": "mnist1d", "samples": 1200, "val_fraction": 0.2, "seed": 0},
        "target": {"goal": 0.3, "levels": [0.3], "max_samples": trial_samples},
        "budget": {"total_usd": 3.0, "envelopes": {"profile": 1.0, "search": 1.0, "train": 1.0}},
        "hardware": {"allow": ["local/cpu-1", "local/cpu-2"]},
        "search": {
            "trials": 1,
            "trial_samples": trial_samples,
            "seed": 5,
            "space": {
                "families": ["mlp", "cnn"],
                "mlp": {"width": [16, 64], "depth": [1, 2]},
                "cnn": {"channels": [4, 16], "depth": [1, 2]},
            },
        },
        "runtime": {"eval_every_samples": 1000},
    }


def _one(url: str, workers: int, trials: int, trial_samples: int) -> dict[str, Any]:
    import optuna
    import yaml

    from paretrain.runtime.money.ledger import read_charges

    folder = Path(tempfile.mkdtemp(prefix=f"paretrain-scale-{workers}-"))
    (folder / "spec.yaml").write_text(yaml.safe_dump(_spec(trial_samples)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "paretrain.cli",
            "search",
            "spec.yaml",
            "--storage",
            url,
            "--workers",
            str(workers),
            "--trials",
            str(trials),
            "--no-track",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"search with {workers} workers failed: {out.stderr[-2000:]}")
    study = optuna.load_study(study_name="scale-out", storage=url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    spent = math.fsum(
        c["usd"] for f in (folder / ".paretrain" / "ledger").glob("*.jsonl") for c in read_charges(f)
    )
    cpus = os.cpu_count() or 1
    threads = cpus if workers == 1 else max(1, cpus // workers)
    return {
        "workers": workers,
        "threads_per_worker": threads,
        "trials": len(done),
        "span_s": round(span, 2),
        "wall_s": round(wall, 2),
        "trials_per_hour": round(len(done) / span * 3600.0, 1),
        "trials_per_hour_wall": round(len(done) / wall * 3600.0, 1),
        "spent_usd": spent,
        "usd_per_trial": spent / len(done),
    }


def bench_search(
    workers: tuple[int, ...] = (1, 2, 4), trials: int = 12, trial_samples: int = 30000, repeats: int = 3
) -> dict[str, Any]:
    """Trials per hour of ``paretrain search --workers N`` on one PostgreSQL study (module doc):
    ``repeats`` rounds over the worker counts, interleaved so that a busy spell of the machine
    lands on every count; each count's median round."""
    sys.path.insert(0, str(ROOT))
    from benchmarks._postgres import postgres_server

    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in workers}
    with postgres_server() as pg:
        for r in range(repeats):
            for n in workers:
                runs[n].append(_one(pg.create_database(f"scale_{n}_{r}"), n, trials, trial_samples))
    rows = []
    for n in workers:
        ordered = sorted(runs[n], key=lambda x: x["trials_per_hour"])
        rows.append(
            {
                **ordered[(len(ordered) - 1) // 2],
                "rounds_trials_per_hour": [x["trials_per_hour"] for x in runs[n]],
            }
        )
    base = rows[0]["trials_per_hour"]
    for row in rows:
        row["speedup"] = round(row["trials_per_hour"] / base, 2)
    return {
        "storage": "postgresql (local server, started by the benchmark)",
        "cpus": os.cpu_count(),
        "trials_per_run": trials,
        "trial_samples": trial_samples,
        "repeats": repeats,
        "workload": "mnist1d (tiny MLPs and CNNs)",
        "rows": rows,
    }


def print_search(r: dict[str, Any]) -> None:
    print(
        f"search on PostgreSQL, {r['trials_per_run']} MNIST-1D trials of {r['trial_samples']} samples per run, "
        f"{r['cpus']} CPUs"
    )
    print(
        f"  {'workers':<8} {'threads':>7} {'trials':>6} {'span_s':>8} {'trials/h':>9} {'speedup':>8} {'wall_s':>8} "
        f"{'trials/h wall':>14} {'usd/trial':>10}"
    )
    for x in r["rows"]:
        print(
            f"  {x['workers']:<8} {x['threads_per_worker']:>7} {x['trials']:>6} {x['span_s']:>8.1f} {x['trials_per_hour']:>9.0f} "
            f"{x['speedup']:>8.2f} {x['wall_s']:>8.1f} {x['trials_per_hour_wall']:>14.0f} {x['usd_per_trial']:>10.2e}"
        )
