"""The spec's planner and runtime sections: how plans are made and how runs are carried out.

Part of the spec's one field table (``paretrain.planner.inputs.spec_fields``): what is trained
and what it may cost lives there, how it is planned and run here.
"""

from __future__ import annotations

from paretrain.planner.inputs.schema import Field

__all__ = ["PLANNER_SECTION", "RUNTIME_SECTION"]

_num = lambda **kw: Field("number", **kw)  # noqa: E731 - table shorthand
_int = lambda **kw: Field("int", **kw)  # noqa: E731 - table shorthand

PLANNER_SECTION = Field(
    "section",
    default={},
    fields={
        "stages": _int(default=3, minimum=1, maximum=16),
        "batch_sizes": Field(
            "list",
            default=[16, 32, 64, 128, 256],
            nonempty=True,
            items=_int(minimum=1, maximum=1_000_000),
        ),
        "precisions": Field(
            "list",
            default=["fp32"],
            nonempty=True,
            items=Field("str", choices=("fp32", "bf16", "fp16")),
            help="training precisions to plan (each profiled on the local devices "
            "that train in it; fp16 scales the loss)",
        ),
        "max_workers": _int(
            default=1,
            minimum=1,
            maximum=1024,
            help="data-parallel workers per stage: 1, 2, 4, ... up to this",
        ),
        "min_workers": _int(
            default=1,
            minimum=1,
            maximum=1024,
            help="the fewest workers a stage may use (e.g. 2 with max_workers 2: every stage data parallel)",
        ),
        "solver": Field("str", default="highs", choices=("highs", "cbc")),
        "pareto_points": _int(
            default=None,
            nullable=True,
            minimum=2,
            maximum=1000,
            help="cap on the Pareto set's size (unset: the exact front)",
        ),
        "time_limit_s": _num(default=60.0, minimum=0, exclusive_minimum=True),
        "confidence": _num(
            default=0.9,
            minimum=0.5,
            maximum=0.99,
            help="the quantile of cost and wall time the budget and deadline apply to",
        ),
        "exact_front": Field(
            "bool",
            default=False,
            help="list every point of the exact front, also those within the prediction's spread",
        ),
        "convergence": Field(
            "str",
            default="truncated",
            choices=("truncated", "full"),
            help="how convergence is measured: truncated (one partial run per config, its "
            "learning curve extrapolated; the profile aims at profile_fraction of the job, and a "
            "run may start from its checkpoint) or full (every config to the top level at each "
            "convergence batch size: the reference the fidelity benchmark compares against)",
        ),
        "profile_fraction": _num(
            default=0.1,
            minimum=0,
            exclusive_minimum=True,
            maximum=1,
            help="the profile's spend on truncated runs stays under this share of the "
            "predicted cost of training the cheapest config to the goal",
        ),
        "convergence_batch_sizes": Field(
            "list",
            default=[16, 64, 256],
            items=_int(minimum=1),
            help="the batch sizes of a full measurement; a truncated run trains at the smallest",
        ),
        "profile_steps": _int(
            default=50,
            minimum=5,
            maximum=10_000,
            help="the most training steps timed per batch size and device; timing stops earlier "
            "once the shape of step time over batch sizes is known (2% standard error)",
        ),
        "noise": Field(
            "bool",
            default=True,
            help="convergence: full only: one more run to the top level measuring how the gradient noise grows, for per-stage B_noise (truncated runs always sample it along the same run)",
        ),
    },
)

RUNTIME_SECTION = Field(
    "section",
    default={},
    fields={
        "drift_threshold": _num(
            default=6.0,
            minimum=0,
            exclusive_minimum=True,
            help="CUSUM alarm threshold (standard deviations)",
        ),
        "window": _int(default=10, minimum=2, help="observations that set a drift detector's baseline"),
        "cooldown_s": _num(default=10.0, minimum=0),
        "loader_workers": _int(
            default=0,
            minimum=0,
            maximum=64,
            help="DataLoader worker processes for datasets that are not in-memory tensors",
        ),
        "checkpoint_every_s": _num(default=30.0, minimum=0, exclusive_minimum=True),
        "keep_checkpoints": _int(default=3, minimum=1),
        "eval_every_samples": _int(default=2000, minimum=1),
        "prefer": Field("str", default="cost", choices=("cost", "time")),
        "adapt": Field("bool", default=True, help="replan on drift, pause through price peaks, roll back"),
        "pause_threshold": _num(
            default=0.5, minimum=0, help="pause when the price is this much above the plan's"
        ),
        "rollback_threshold": _num(
            default=0.1,
            minimum=0,
            help="roll back when validation loss worsens this much after a change",
        ),
        "on_divergence": Field(
            "str",
            default="retry",
            choices=("retry", "stop"),
            help="a non-finite loss or metric: retry once from the last checkpoint at half "
            "the learning rate, or stop at once",
        ),
        "max_memory_mb": _num(
            default=None,
            nullable=True,
            minimum=0,
            exclusive_minimum=True,
            help="on a CPU, the most memory a training step may take (its estimated peak): "
            "a larger batch is halved until it fits",
        ),
        "events": Field(
            "list",
            default=[],
            items=Field(
                "section",
                fields={
                    "at_s": _num(minimum=0, help="run time (s) at which the event starts"),
                    "kind": Field("str", choices=("price", "slowdown", "preempt")),
                    "factor": _num(default=1.0, minimum=0, exclusive_minimum=True),
                    "duration_s": _num(default=None, nullable=True, minimum=0, exclusive_minimum=True),
                    "hardware": Field("str", default=None, nullable=True),
                },
            ),
            help="scripted events: price x factor, step slowdown x factor, preemption",
        ),
        "emulate_on": Field(
            "str",
            default=None,
            nullable=True,
            help="local device that runs the math of emulated offers (default: fastest CPU)",
        ),
    },
)
