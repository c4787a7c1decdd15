#!/usr/bin/env bash
# paretrain on a GPU: plan and run both built-in workloads (MNIST-1D and the stdlib byte-level
# LM) on local/cuda:0, in fp32, bf16 and fp16 where the GPU trains in them, and print the
# predicted against the realized cost and wall time of each run.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#   GPU_CHECK_DIR=/tmp/x bash benchmarks/gpu_check.sh   # where specs, plans and ledgers go
#   GPU_CHECK_DEVICE=local/cpu-2 bash benchmarks/gpu_check.sh  # rehearse the same flow on a CPU
#
# Most of the time goes to measuring: each precision's steps on the device, and convergence
# at three batch sizes on the largest local CPU. The CPU rehearsal took 11 + 15 minutes on a
# busy 2-core machine (fp16 on a CPU is slow to measure: up to 8x fp32's step time).
#
# Exit: 0 both ran (a run stopped at its budget still counts: its row says so); 1 no CUDA
# device here, or a run failed; a failing plan exits with paretrain's own code (its message
# above). Writes benchmarks/results/gpu_check.json (a CPU rehearsal: into the working folder).
#
# The specs are small: the profile (steps timed with torch.cuda.synchronize, peak memory from
# CUDA's allocator) is measured on the GPU; convergence and gradient noise are measured on the
# largest local CPU, as for every plan. Prices: local GPU $2.50/h, so the run's cost is its
# GPU seconds at that price.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

DEVICE=${GPU_CHECK_DEVICE:-local/cuda:0}
if [[ $DEVICE == local/cuda:* ]] && ! "$PYTHON" - "${DEVICE#local/}" <<'EOF'
import sys
import torch
index = int(sys.argv[1].split(":")[1])
if not torch.cuda.is_available() or index >= torch.cuda.device_count():
    why = ("this torch is a CPU-only build" if torch.version.cuda is None
           else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees "
                f"{torch.cuda.device_count() if torch.cuda.is_available() else 'none'}")
    sys.exit(f"gpu_check: no CUDA device {sys.argv[1]}: {why}. To fix: run it on a machine with an "
             "NVIDIA GPU, its driver and a CUDA build of torch.")
print(f"gpu_check: {torch.cuda.get_device_name(index)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
EOF
then
    exit 1
fi

WORK=${GPU_CHECK_DIR:-$(mktemp -d -t paretrain-gpu-check.XXXXXX)}
mkdir -p "$WORK"
echo "gpu_check: $DEVICE; working in $WORK"

# What both specs share: the GPU only, every precision, no search, a budget the runs fit in.
common() {
    cat <<EOF
budget:
  total_usd: 2.0
  envelopes: {profile: 0.6, search: 0.0, train: 1.4}
  approval_above_usd: 2.0
deadline_s: 900
hardware:
  local: auto
  catalog: none
  allow: [$DEVICE]
  prices: {gpu_usd_per_h: 2.5, cpu_vcpu_usd_per_h: 0.0425}
  spot: false
tracking: {uri: null, experiment: null}
EOF
}

mkdir -p "$WORK/mnist1d" "$WORK/stdlib_lm"
{
    cat <<EOF
schema: paretrain.spec/1
name: gpu-check-mnist1d
workload: {name: mnist1d, samples: 10000, val_fraction: 0.1, seed: 0}
configs:
  - {id: mlp-256x2, family: mlp, width: 256, depth: 2, optimizer: adam, lr: 0.001}
  - {id: cnn-32x3, family: cnn, channels: 32, depth: 3, kernel: 5, optimizer: adam, lr: 0.002}
target: {metric: val_accuracy, goal: 0.6, levels: [0.6, 0.7], max_samples: 120000}
planner:
  stages: 2
  batch_sizes: [32, 64, 128, 256, 512]
  precisions: [fp32, bf16, fp16]
  convergence_batch_sizes: [32, 128, 512]
  profile_steps: 20
runtime: {checkpoint_every_s: 30, keep_checkpoints: 2, eval_every_samples: 4000}
EOF
    common
} > "$WORK/mnist1d/spec.yaml"
{
    cat <<EOF
schema: paretrain.spec/1
name: gpu-check-stdlib-lm
workload: {name: stdlib_lm, args: {max_bytes: 3000000, val_windows: 256}}
configs:
  - {id: gpt-64x2, family: gpt, layers: 2, width: 64, heads: 2, context: 64, optimizer: adam, lr: 0.003}
target: {metric: val_bpb, direction: minimize, goal: 4.0, levels: [4.0, 3.5], max_samples: 60000}
planner:
  stages: 2
  batch_sizes: [16, 32, 64, 128, 256]
  precisions: [fp32, bf16, fp16]
  convergence_batch_sizes: [16, 32, 64]
  profile_steps: 20
  noise: false
runtime: {checkpoint_every_s: 30, keep_checkpoints: 2, eval_every_samples: 4000}
EOF
    common
} > "$WORK/stdlib_lm/spec.yaml"

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
paretrain() { "$PYTHON" -m paretrain.cli "$@"; }

for w in mnist1d stdlib_lm; do
    dir="$WORK/$w"
    echo
    echo "== $w: plan =="
    start=$(date +%s)
    paretrain --workdir "$dir" plan "$dir/spec.yaml" -o "$dir/plan.json" --no-track
    echo "planned in $(( $(date +%s) - start )) s"
    echo "== $w: run (knee) =="
    rc=0
    paretrain --workdir "$dir" run "$dir/plan.json" --candidate knee --approve --no-track --format json \
        > "$dir/run.json" || rc=$?
    if [[ $rc -ne 0 && $rc -ne 3 ]]; then  # 3: stopped at its budget or deadline, still a result
        echo "gpu_check: paretrain run failed for $w (exit $rc)" >&2
        exit 1
    fi
done

SUMMARY="$ROOT/benchmarks/results/gpu_check.json"
[[ $DEVICE == local/cuda:* ]] || SUMMARY="$WORK/gpu_check.json"
"$PYTHON" - "$WORK" "$SUMMARY" "$DEVICE" <<'EOF'
import json
import sys
from pathlib import Path

import torch

work, out, device = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
rows = []
for w in ("mnist1d", "stdlib_lm"):
    plan = json.loads((work / w / "plan.json").read_text())
    run = json.loads((work / w / "run.json").read_text())["run"]
    cand = next(c for c in plan["pareto"] if c["id"] == run["candidate"])
    stages = " > ".join(f"{s['hardware'].split('/')[-1]} {s['precision']} b{s['batch_size']}"
                        for s in cand["stages"])
    notes = [n for n in plan.get("notes", []) if "precision" in n]
    rows.append({"workload": w, "candidate": run["candidate"], "stages": stages, "status": run["status"],
                 "metric": run["metric"], "predicted_metric": run["predicted_accuracy"],
                 "realized_metric": run["accuracy"],
                 "predicted_cost_usd": run["predicted_cost_usd"], "realized_cost_usd": run["cost_usd"],
                 "predicted_wall_s": run["predicted_wall_s"], "realized_wall_s": run["wall_s"],
                 "precision_notes": notes})

head = f"{'workload':<10} {'schedule':<34} {'status':<8} {'cost pred':>10} {'realized':>10} {'ratio':>6} " \
       f"{'wall pred':>9} {'realized':>9} {'ratio':>6}"
print("\n" + head + "\n" + "-" * len(head))
for r in rows:
    cr = r["realized_cost_usd"] / r["predicted_cost_usd"] if r["predicted_cost_usd"] else float("nan")
    wr = r["realized_wall_s"] / r["predicted_wall_s"] if r["predicted_wall_s"] else float("nan")
    print(f"{r['workload']:<10} {r['stages'][:34]:<34} {r['status']:<8} {r['predicted_cost_usd']:>10.6f} "
          f"{r['realized_cost_usd']:>10.6f} {cr:>6.2f} {r['predicted_wall_s']:>9.1f} {r['realized_wall_s']:>9.1f} "
          f"{wr:>6.2f}")
for r in rows:
    print(f"{r['workload']}: {r['metric']} predicted {r['predicted_metric']:.4f}, realized {r['realized_metric']:.4f}")
    for n in r["precision_notes"]:
        print(f"  note: {n}")
out.parent.mkdir(parents=True, exist_ok=True)
name = torch.cuda.get_device_name(device.split("/")[1]) if device.startswith("local/cuda") else device
out.write_text(json.dumps({"device": device, "name": name, "torch": torch.__version__, "rows": rows},
                          indent=1) + "\n")
print(f"\nwrote {out}")
EOF
