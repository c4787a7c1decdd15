"""paretrain: plan and run model training under a money budget.

The public API, importable from ``paretrain`` itself:

- the workload API a user writes training code against (also ``paretrain.workload``):
  ``Workload``, ``WorkloadInfo``, ``Family``, ``Param``, ``Config``, ``check_workload``,
  ``classification_metrics``;
- the files paretrain reads and writes, as typed records: ``Spec`` and ``parse_spec`` (the spec
  file), ``Plan``, ``Candidate``, ``StagePlan``, ``read_plan`` and ``plan_from_json`` (the plan
  file), ``Profile`` and ``read_profile`` (the profile file);
- the errors a caller may catch: ``UserError`` (bad input: ``SpecError``, ``InputError``) and
  ``StopError`` (nothing ran, or a run stopped: ``InfeasiblePlan``, ``BudgetExhausted``).

Everything else (``paretrain.planner``, ``paretrain.runtime``) is paretrain's own and may change
between releases. Names are loaded on first use, so ``import paretrain`` and ``import
paretrain.planner`` do not import torch.

>>> import paretrain
>>> paretrain.Param("width", "int", 16, 256, log=True).kind
'int'
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paretrain.planner.errors import (
        BudgetExhausted,
        InfeasiblePlan,
        InputError,
        SpecError,
        StopError,
        UserError,
    )
    from paretrain.planner.inputs.space import Config, Family, Param, WorkloadInfo
    from paretrain.planner.inputs.spec import Spec
    from paretrain.planner.inputs.spec_parse import parse_spec
    from paretrain.planner.measure.profile import Profile
    from paretrain.planner.plan.plan import Candidate, Plan, StagePlan
    from paretrain.planner.plan.plan_file import plan_from_json
    from paretrain.run_inputs import read_plan
    from paretrain.runtime.files import read_profile
    from paretrain.runtime.train.workloads.api import Workload, check_workload, classification_metrics

__version__ = "0.1.0"

#: public name -> the module that defines it
_HOME = {
    "Workload": "paretrain.runtime.train.workloads.api",
    "check_workload": "paretrain.runtime.train.workloads.api",
    "classification_metrics": "paretrain.runtime.train.workloads.api",
    "WorkloadInfo": "paretrain.planner.inputs.space",
    "Family": "paretrain.planner.inputs.space",
    "Param": "paretrain.planner.inputs.space",
    "Config": "paretrain.planner.inputs.space",
    "Spec": "paretrain.planner.inputs.spec",
    "parse_spec": "paretrain.planner.inputs.spec_parse",
    "Plan": "paretrain.planner.plan.plan",
    "Candidate": "paretrain.planner.plan.plan",
    "StagePlan": "paretrain.planner.plan.plan",
    "plan_from_json": "paretrain.planner.plan.plan_file",
    "read_plan": "paretrain.run_inputs",
    "Profile": "paretrain.planner.measure.profile",
    "read_profile": "paretrain.runtime.files",
    "UserError": "paretrain.planner.errors",
    "StopError": "paretrain.planner.errors",
    "InputError": "paretrain.planner.errors",
    "SpecError": "paretrain.planner.errors",
    "InfeasiblePlan": "paretrain.planner.errors",
    "BudgetExhausted": "paretrain.planner.errors",
}

__all__ = [
    "BudgetExhausted",
    "Candidate",
    "Config",
    "Family",
    "InfeasiblePlan",
    "InputError",
    "Param",
    "Plan",
    "Profile",
    "Spec",
    "SpecError",
    "StagePlan",
    "StopError",
    "UserError",
    "Workload",
    "WorkloadInfo",
    "check_workload",
    "classification_metrics",
    "parse_spec",
    "plan_from_json",
    "read_plan",
    "read_profile",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'paretrain' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
