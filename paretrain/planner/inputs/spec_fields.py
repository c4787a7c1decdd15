"""The spec's field table: every key, its kind, bounds, default and help, in one place.

``paretrain.planner.inputs.spec`` validates with it and ``paretrain spec-schema`` renders it as JSON Schema.
Prices here are data with their source and date.
"""

from __future__ import annotations

from paretrain.planner.inputs.schema import Field
from paretrain.planner.inputs.spec_sections import PLANNER_SECTION, RUNTIME_SECTION

__all__ = ["DEFAULT_CPU_PRICE", "DEFAULT_GPU_PRICE", "SPEC_FIELDS", "SPEC_SCHEMA"]

SPEC_SCHEMA = "paretrain.spec/1"

#: Default price of one local vCPU-hour: AWS EC2 c6i.large (2 vCPU, Intel Xeon) on-demand,
#: Linux, us-east-1, $0.085/h = $0.0425 per vCPU-hour (https://aws.amazon.com/ec2/pricing/on-demand/,
#: read 2026-11-28).
DEFAULT_CPU_PRICE = 0.0425
#: Default price of one local GPU-hour: AWS EC2 g5.xlarge (1x A10G) on-demand, us-east-1, $1.006/h.
DEFAULT_GPU_PRICE = 1.006

_num = lambda **kw: Field("number", **kw)  # noqa: E731 - table shorthand
_int = lambda **kw: Field("int", **kw)  # noqa: E731 - table shorthand


_CONFIG_FIELD = Field(
    "map",
    items=Field("any"),
    help="a model configuration",
    fix="give id, family and that family's parameters",
)

SPEC_FIELDS = Field(
    "section",
    fields={
        "schema": Field("str", default=SPEC_SCHEMA, choices=(SPEC_SCHEMA,), help="the spec format version"),
        "name": Field(
            "str",
            nonempty=True,
            help="a name for this spec (also the MLflow experiment)",
            fix="add a line 'name: my-experiment'",
        ),
        "workload": Field(
            "section",
            fields={
                "name": Field(
                    "str",
                    default=None,
                    nullable=True,
                    help="a built-in workload (mnist1d, stdlib_lm) or python:pkg.module:factory",
                    fix="name the workload, e.g. 'workload: {name: mnist1d}', "
                    "'workload: {python: my_pkg.train:make_workload}' or "
                    "'workload: {file: ./my_workload.py, factory: make_workload}'",
                ),
                "python": Field(
                    "str",
                    default=None,
                    nullable=True,
                    help="your workload's factory as pkg.module:function (importable from here)",
                ),
                "file": Field(
                    "str",
                    default=None,
                    nullable=True,
                    help="a Python file holding your workload's factory (relative to the spec)",
                ),
                "factory": Field("str", default="make_workload", help="the factory's name in 'file'"),
                "args": Field(
                    "map",
                    default={},
                    items=Field("any"),
                    help="keyword arguments for your workload's factory",
                ),
                "samples": _int(
                    default=10000, minimum=200, maximum=10_000_000, help="dataset size (built-ins)"
                ),
                "val_fraction": _num(
                    default=0.1, minimum=0.01, maximum=0.5, help="share held out for validation"
                ),
                "seed": _int(
                    default=0,
                    minimum=0,
                    help="seeds the model's initialization and the training order (and a built-in "
                    "workload's data; a workload.file or workload.python factory seeds its data from "
                    "its own args)",
                ),
            },
            help="the workload to train; there is no default",
            fix="add a section naming the workload, e.g. "
            "'workload: {name: mnist1d}' (built-in) or 'workload: {python: my_pkg.train:make_workload}'",
        ),
        "configs": Field(
            "list",
            default=[],
            items=_CONFIG_FIELD,
            help="model configurations to plan over (the search adds its own)",
        ),
        "target": Field(
            "section",
            fields={
                "metric": Field(
                    "str",
                    default=None,
                    nullable=True,
                    help="the validation metric to reach (default: the workload's target metric)",
                ),
                "direction": Field(
                    "str",
                    default=None,
                    nullable=True,
                    choices=("maximize", "minimize"),
                    help="whether higher or lower is better (default: the workload's declaration)",
                ),
                "goal": _num(
                    help="the metric value to reach, e.g. 0.8 for val_accuracy or 2.5 for val_bpb",
                    fix="give the validation metric value to reach, e.g. 'goal: 0.8'",
                ),
                "levels": Field(
                    "list",
                    default=[],
                    items=_num(),
                    help="levels the planner may aim for (at or beyond goal); empty: goal only",
                ),
                "max_samples": _int(minimum=1, help="the most training samples any run may use"),
            },
        ),
        "budget": Field(
            "section",
            fields={
                "total_usd": _num(
                    minimum=0,
                    exclusive_minimum=True,
                    help="the most money the whole job may spend, in USD",
                    fix="give a finite budget > 0 in USD, e.g. 'total_usd: 0.05'",
                ),
                "envelopes": Field(
                    "section",
                    default={},
                    fields={
                        "profile": _num(default=None, nullable=True, minimum=0),
                        "search": _num(default=None, nullable=True, minimum=0),
                        "train": _num(default=None, nullable=True, minimum=0),
                    },
                    help="budget per pipeline stage; unset shares split the rest",
                ),
                "approval_above_usd": _num(
                    default=None, nullable=True, minimum=0, help="a run predicted above this needs --approve"
                ),
                "project_ceiling_usd": _num(
                    default=None,
                    nullable=True,
                    minimum=0,
                    help="the most all runs of the project may spend per period",
                ),
                "period": Field("str", default="month", choices=("day", "week", "month")),
            },
        ),
        "deadline_s": _num(
            minimum=0,
            exclusive_minimum=True,
            help="wall-clock deadline of training, seconds",
            fix="give a deadline in seconds, e.g. 'deadline_s: 900'",
        ),
        "hardware": Field(
            "section",
            default={},
            fields={
                "local": Field("str", default="auto", choices=("auto", "none")),
                "catalog": Field(
                    "str", default="none", nonempty=True, help="builtin, none, or a path to a catalog CSV"
                ),
                "allow": Field(
                    "list",
                    default=["local/cpu-1", "local/cpu-2"],
                    nonempty=True,
                    items=Field("str", nonempty=True),
                    help="the offers the planner may use, by name (local/cpu-1, aws/g5.xlarge) or "
                    "fnmatch pattern (aws/*, *:spot, *)",
                    fix="list at least one offer, e.g. 'allow: [local/cpu-1]'",
                ),
                "prices": Field(
                    "section",
                    default={},
                    fields={
                        "cpu_vcpu_usd_per_h": _num(default=DEFAULT_CPU_PRICE, minimum=0),
                        "gpu_usd_per_h": _num(default=DEFAULT_GPU_PRICE, minimum=0),
                    },
                ),
                "spot": Field("bool", default=False, help="whether spot offers may be chosen"),
            },
        ),
        "profiles": Field(
            "list",
            default=[],
            items=Field("str", nonempty=True),
            help="profile files measured elsewhere; they win over models",
        ),
        "convergence": Field(
            "map",
            default=None,
            nullable=True,
            items=Field(
                "section",
                fields={
                    "e_min": _num(minimum=0, exclusive_minimum=True),
                    "b_noise": _num(minimum=0, exclusive_minimum=True),
                    "level": _num(
                        default=None,
                        nullable=True,
                        help="the target metric's level these hold at (any metric, either direction)",
                    ),
                    "accuracy": _num(default=None, nullable=True, help="the old name of `level`"),
                },
            ),
            help="per config id: known E_min, B_noise and the level they reach (skips measuring)",
        ),
        "search": Field(
            "section",
            default={},
            fields={
                "trials": _int(default=0, minimum=0, help="Optuna trials (0: no search)"),
                "sampler": Field("str", default="nsga2", choices=("nsga2", "tpe", "gp")),
                "storage": Field("str", default="sqlite:///paretrain-optuna.db", nonempty=True),
                "seed": _int(default=0, minimum=0),
                "space": Field("map", default={}, items=Field("any"), help="narrows the workload's space"),
                "max_params": _int(default=None, nullable=True, minimum=1),
                "max_memory_mb": _num(default=None, nullable=True, minimum=0, exclusive_minimum=True),
                "max_latency_ms": _num(default=None, nullable=True, minimum=0, exclusive_minimum=True),
                "trial_samples": _int(
                    default=None,
                    nullable=True,
                    minimum=1,
                    help="samples each trial may train (default: target.max_samples)",
                ),
                "study": Field(
                    "str", default=None, nullable=True, help="Optuna study name (default: the spec's name)"
                ),
                "front": _int(
                    default=3,
                    minimum=1,
                    help="how many search configs (best score first) feed the planner",
                ),
                "fidelity": Field(
                    "str",
                    default="asha",
                    choices=("asha", "median"),
                    help="how trials are cut short: asha (rungs a factor 3 apart, promotion by the "
                    "learning curve's extrapolated value at full fidelity) or median (the older "
                    "cut below the median of finished trials at the same evaluation)",
                ),
            },
        ),
        "planner": PLANNER_SECTION,
        "runtime": RUNTIME_SECTION,
        "tracking": Field(
            "section",
            default={},
            fields={
                "uri": Field("str", default=None, nullable=True, help="MLflow tracking URI"),
                "experiment": Field(
                    "str", default=None, nullable=True, help="MLflow experiment (default: name)"
                ),
            },
        ),
    },
)
