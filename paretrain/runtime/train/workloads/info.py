"""What the built-in workloads declare: model families and their search space, as data."""

from __future__ import annotations

from paretrain.planner.inputs.space import Family, Param, WorkloadInfo

__all__ = ["MNIST1D_INFO", "STDLIB_LM_INFO", "STDLIB_LM_SEQUENCE"]

# Short training budgets favour little regularization: dropout beyond 0.3 and weight decay
# beyond 1e-3 (L2 inside Adam) only slowed every MNIST-1D model in the search benchmark.
_DROPOUT = Param("dropout", "float", 0.0, 0.3, default=0.0)

MNIST1D_INFO = WorkloadInfo(
    name="mnist1d",
    lr=Param("lr", "float", 3e-4, 2e-2, log=True, default=1e-3),
    weight_decay=Param("weight_decay", "float", 0.0, 1e-3, default=0.0),
    description="MNIST-1D (Greydanus 2020): 10 classes of 40-point 1-D signals, generated offline",
    input_shape=(40,),
    classes=10,
    families=(
        Family(
            "mlp",
            (
                Param("width", "int", 16, 1024, log=True, default=256),
                Param("depth", "int", 1, 6, default=2),
                _DROPOUT,
            ),
        ),
        Family(
            "cnn",
            (
                Param("channels", "int", 4, 128, log=True, default=32),
                Param("depth", "int", 1, 5, default=3),
                Param("kernel", "int", 3, 9, default=5),
                _DROPOUT,
            ),
        ),
        Family(
            "gru",
            (
                Param("hidden", "int", 8, 256, log=True, default=64),
                Param("depth", "int", 1, 3, default=1),
                _DROPOUT,
            ),
        ),
    ),
)

# The byte-level language model (paretrain.runtime.train.workloads.stdlib_lm). Widths and head counts are
# choices so that every pair divides (head width 8 to 256). A context is the model's attention
# span; the workload's windows are STDLIB_LM_SEQUENCE bytes, the longest context, and a model
# with a shorter one reads each window as independent pieces. Why these defaults and no longer
# context: paretrain/runtime/train/workloads/stdlib_lm.py (measured by benchmarks/lm_throughput.py).
STDLIB_LM_SEQUENCE = 64

STDLIB_LM_INFO = WorkloadInfo(
    name="stdlib_lm",
    lr=Param("lr", "float", 3e-4, 1e-2, log=True, default=3e-3),
    weight_decay=Param("weight_decay", "float", 0.0, 0.1, default=0.0),
    description="byte-level causal transformer on this Python's standard-library source; "
    "target: validation bits per byte (minimize)",
    input_shape=(STDLIB_LM_SEQUENCE,),
    classes=256,
    metrics=(("val_loss", "minimize"), ("val_bpb", "minimize")),
    target="val_bpb",
    families=(
        Family(
            "gpt",
            (
                Param("layers", "int", 1, 6, default=2),
                Param("width", "choice", choices=(32, 64, 128, 256), default=64),
                Param("heads", "choice", choices=(1, 2, 4), default=2),
                Param("context", "choice", choices=(16, 32, 64), default=64),
                Param("dropout", "float", 0.0, 0.2, default=0.0),
                Param("tied", "choice", choices=(True, False), default=True),
            ),
        ),
    ),
)
