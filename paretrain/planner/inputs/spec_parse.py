"""The spec file (YAML), or any spec mapping, -> a validated ``Spec``.

The rules live in one table (``paretrain.planner.inputs.spec_fields.SPEC_FIELDS``) that also renders the spec's
JSON Schema (``paretrain spec-schema``). Cross-field rules live here and in the dataclasses'
``__post_init__`` (``paretrain.planner.inputs.spec``).

>>> spec = parse_spec_text("name: x\\nworkload: {name: mnist1d}\\ntarget: {goal: 0.8, max_samples: 1000}\\n"
...                        "budget: {total_usd: 1}\\ndeadline_s: 60\\nconfigs: [{id: a, family: mlp}]")
>>> spec.budget.train_usd
0.6
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from paretrain.planner.errors import InputError, SpecError
from paretrain.planner.inputs.schema import Field, check, to_json_schema
from paretrain.planner.inputs.space import OPTIMIZERS, Config, WorkloadInfo
from paretrain.planner.inputs.spec import (
    SPEC_FIELDS,
    BudgetSpec,
    ConvergenceHint,
    HardwareSpec,
    PlannerSpec,
    RuntimeSpec,
    SearchSpec,
    Spec,
    TargetSpec,
    TrackingSpec,
    WorkloadSpec,
)
from paretrain.planner.inputs.spec_workload import check_workload_name, workload_section

__all__ = ["load_spec_yaml", "parse_spec", "parse_spec_text", "spec_json_schema"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_OFFER = re.compile(r"^[a-z0-9_-]+/[A-Za-z0-9_.:-]+$")
_CONFIG_FIXED = frozenset({"id", "family", "optimizer", "lr", "weight_decay", "base_batch"})
_OFFER_PATTERN = re.compile(r"^[A-Za-z0-9_.:/*?\[\]!-]*[*?\[][A-Za-z0-9_.:/*?\[\]!-]*$")  # fnmatch-style


def spec_json_schema() -> dict[str, Any]:
    """The spec's JSON Schema, rendered from the same table that validates it."""
    return to_json_schema(SPEC_FIELDS, title="paretrain spec")


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key that a mapping repeats: plain YAML keeps the last one,
    so a second ``budget:`` block pasted below the first would silently replace it. A merge key
    (``<<: *anchor``) is not a repeat: the keys written beside it override the merged ones, as
    YAML means them to."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base loader says so
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_spec_yaml(text: str) -> Any:
    """A spec's YAML text parsed, a repeated key refused (``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_UniqueKeys)  # a SafeLoader: no arbitrary objects


def parse_spec_text(
    text: str, where: str = "<spec>", workloads: Mapping[str, WorkloadInfo] | None = None
) -> Spec:
    """Parse and validate a spec's YAML text; raise ``InputError``/``SpecError`` on bad input."""
    try:
        data = load_spec_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        fix = (
            "keep one of them (YAML would silently use the last)"
            if problem.startswith("duplicate key")
            else "correct the YAML syntax there"
        )
        raise InputError(f"{where}: the spec is not valid YAML{at}: {problem}. To fix: {fix}") from None
    return parse_spec(data, where, workloads)


def _hint(config_id: str, c: Mapping[str, Any], where: str) -> ConvergenceHint:
    """A ``convergence:`` hint; ``accuracy`` is the old name of ``level`` (read, never written)."""
    level = c.get("level") if c.get("level") is not None else c.get("accuracy")
    if level is None:
        raise SpecError(
            where, f"convergence.{config_id}.level", "is required", None, "add the metric level E_min reaches"
        )
    return ConvergenceHint(float(c["e_min"]), float(c["b_noise"]), float(level))


def parse_spec(data: Any, where: str = "<spec>", workloads: Mapping[str, WorkloadInfo] | None = None) -> Spec:
    """Validate a parsed spec mapping into a ``Spec`` (``workloads``: the registry a workload's
    name, metric and config families are checked against; None checks the names' form only)."""
    if data is None:
        raise SpecError(
            where,
            "(top level)",
            "must be a mapping of keys to values",
            "an empty file",
            "start from 'paretrain init'",
        )
    v = check(data, SPEC_FIELDS, where, "")
    w = workload_section(v["workload"], where)
    check_workload_name(w["name"], where, workloads)
    info = workloads.get(w["name"]) if workloads else None
    configs = _configs(v, where, info)
    target = _target(v["target"], info, where)
    return Spec(
        path=where,
        name=v["name"],
        workload=WorkloadSpec(**{**w, "args": dict(w["args"])}),
        configs=configs,
        target=target,
        budget=_budget(v["budget"], v["budget"]["envelopes"], where),
        deadline_s=v["deadline_s"],
        hardware=_hardware(v["hardware"], where),
        profiles=tuple(v["profiles"]),
        convergence={k: _hint(k, c, where) for k, c in v["convergence"].items()}
        if v["convergence"]
        else None,
        search=SearchSpec(**v["search"]),
        planner=_planner(v["planner"], target, where),
        runtime=RuntimeSpec(**{**v["runtime"], "events": tuple(v["runtime"]["events"])}),
        tracking=TrackingSpec(**v["tracking"]),
    )


def _configs(v: Mapping[str, Any], where: str, info: WorkloadInfo | None) -> tuple[Config, ...]:
    """The spec's model configurations, unique by id; none only when a search or convergence
    hints supply them."""
    configs = tuple(_parse_config(c, i, where, info) for i, c in enumerate(v["configs"]))
    _unique([c.id for c in configs], where, "configs", "id")
    if not configs and v["search"]["trials"] == 0 and not v["convergence"]:
        raise SpecError(
            where,
            "configs",
            "must not be empty when search.trials is 0",
            [],
            "list at least one model configuration, or set search.trials > 0",
        )
    return configs


def _hardware(h: Mapping[str, Any], where: str) -> HardwareSpec:
    for i, offer in enumerate(h["allow"]):
        if not (_OFFER.match(offer) or _OFFER_PATTERN.match(offer)):
            raise SpecError(
                where,
                f"hardware.allow[{i}]",
                "must look like provider/name or be a pattern",
                offer,
                "use e.g. local/cpu-1, local/cuda:0, aws/g5.xlarge, or a pattern: aws/*, lambda/*, *:spot, *",
            )
    _unique(h["allow"], where, "hardware", "allow")
    hardware = HardwareSpec(
        allow=tuple(h["allow"]),
        local=h["local"],
        catalog=h["catalog"],
        cpu_vcpu_usd_per_h=h["prices"]["cpu_vcpu_usd_per_h"],
        gpu_usd_per_h=h["prices"]["gpu_usd_per_h"],
        spot=h["spot"],
    )
    if hardware.local == "none" and all(a.startswith("local/") for a in hardware.allow):
        raise SpecError(
            where,
            "hardware.local",
            "excludes every allowed offer",
            "none",
            "set hardware.local: auto or allow catalog offers",
        )
    return hardware


def _planner(p: Mapping[str, Any], target: TargetSpec, where: str) -> PlannerSpec:
    if p["stages"] > 1 and p["stages"] > target.max_samples:
        raise SpecError(
            where, "planner.stages", "must not exceed target.max_samples", p["stages"], "use fewer stages"
        )
    if p["min_workers"] > p["max_workers"]:
        raise SpecError(
            where,
            "planner.min_workers",
            "must not exceed planner.max_workers",
            p["min_workers"],
            f"set it to at most {p['max_workers']}, or raise planner.max_workers",
        )
    if p["convergence"] == "full" and len(p["convergence_batch_sizes"]) < 3:
        raise SpecError(
            where,
            "planner.convergence_batch_sizes",
            "needs at least 3 batch sizes to fit E(B) = E_min (1 + B / B_noise)",
            p["convergence_batch_sizes"],
            "list 3 or more batch sizes, e.g. [16, 64, 256]",
        )
    return PlannerSpec(
        **{
            **p,
            "batch_sizes": tuple(sorted(set(p["batch_sizes"]))),
            "precisions": tuple(dict.fromkeys(p["precisions"])),
            "convergence_batch_sizes": tuple(sorted(set(p["convergence_batch_sizes"]))),
        }
    )


def _budget(b: Mapping[str, Any], env: Mapping[str, Any], where: str) -> BudgetSpec:
    total = b["total_usd"]
    given = {k: env[k] for k in ("profile", "search", "train") if env[k] is not None}
    rest = total - sum(given.values())
    if rest < -1e-12 * max(1.0, total):  # resolved envelopes (a plan's spec) sum to it up to rounding
        raise SpecError(
            where,
            "budget.envelopes",
            f"must sum to at most total_usd ({total:g})",
            sum(given.values()),
            "lower the envelopes or raise budget.total_usd",
        )
    # Unset envelopes share what is left: profiling and search get a fifth each, training the rest.
    missing = [k for k in ("profile", "search", "train") if k not in given]
    shares = {"profile": 0.2, "search": 0.2, "train": 0.6}
    weight = sum(shares[k] for k in missing)
    for k in missing:
        given[k] = max(rest, 0.0) * shares[k] / weight
    return BudgetSpec(
        total_usd=total,
        profile_usd=given["profile"],
        search_usd=given["search"],
        train_usd=given["train"],
        approval_above_usd=b["approval_above_usd"],
        project_ceiling_usd=b["project_ceiling_usd"],
        period=b["period"],
    )


def _target(t: Mapping[str, Any], info: WorkloadInfo | None, where: str) -> TargetSpec:
    """The target metric (the workload's own by default), its direction and levels."""
    metric = t["metric"] or (info.target if info is not None else "val_accuracy")
    declared = info.direction(metric) if info is not None else None
    if info is not None and declared is None:
        raise SpecError(
            where,
            "target.metric",
            "is not a metric this workload reports",
            metric,
            f"use one of: {', '.join(m for m, _ in info.metrics)}",
        )
    direction = t["direction"] or declared or "maximize"
    if declared is not None and direction != declared:
        raise SpecError(
            where,
            "target.direction",
            f"must match the workload's declaration for {metric}",
            direction,
            f"use {declared}, or leave target.direction out",
        )
    if "accuracy" in metric:
        for name, value in [("goal", t["goal"])] + [(f"levels[{i}]", x) for i, x in enumerate(t["levels"])]:
            if not 0 < value <= 1:
                raise SpecError(
                    where,
                    f"target.{name}",
                    "must be an accuracy in (0, 1]",
                    value,
                    "give a validation accuracy such as 0.8",
                )
    for name, value in [("goal", t["goal"])] + [(f"levels[{i}]", x) for i, x in enumerate(t["levels"])]:
        if not math.isfinite(value):
            raise SpecError(where, f"target.{name}", "must be a finite number", value, "give a number")
    try:
        return TargetSpec(
            goal=t["goal"],
            max_samples=t["max_samples"],
            levels=tuple(t["levels"]),
            metric=metric,
            direction=direction,
        )
    except ValueError as err:
        side = ">=" if direction == "maximize" else "<="
        raise SpecError(
            where, "target.levels", f"must all be {side} target.goal", t["levels"], str(err)
        ) from None


def _parse_config(raw: Mapping[str, Any], i: int, where: str, info: WorkloadInfo | None) -> Config:
    path = f"configs[{i}]"
    cid = raw.get("id")
    if not isinstance(cid, str) or not _ID.match(cid):
        raise SpecError(
            where,
            f"{path}.id",
            "must be a name of letters, digits, '-', '_', '.' or ':'",
            cid,
            "give each config an id such as mlp-256x2",
        )
    family = raw.get("family")
    if not isinstance(family, str):
        raise SpecError(
            where,
            f"{path}.family",
            "must be a model family name",
            family,
            f"use one of: {', '.join(info.family_names) if info else 'mlp, cnn, gru'}",
        )
    params = {k: v for k, v in raw.items() if k not in _CONFIG_FIXED}
    if info is not None:
        params = _family_params(params, family, path, where, info)
    opt = raw.get("optimizer", "adam")
    if opt not in OPTIMIZERS:
        raise SpecError(
            where, f"{path}.optimizer", f"must be one of {', '.join(OPTIMIZERS)}", opt, "choose adam or sgd"
        )
    lr = check(raw.get("lr", 1e-3), Field("number", minimum=0, exclusive_minimum=True), where, f"{path}.lr")
    wd = check(raw.get("weight_decay", 0.0), Field("number", minimum=0), where, f"{path}.weight_decay")
    bb = check(raw.get("base_batch", 32), Field("int", minimum=1), where, f"{path}.base_batch")
    return Config(
        id=cid,
        family=family,
        params=tuple(params.items()),
        optimizer=opt,
        lr=lr,
        weight_decay=wd,
        base_batch=bb,
    )


def _family_params(
    params: dict[str, Any], family: str, path: str, where: str, info: WorkloadInfo
) -> dict[str, Any]:
    """A config's parameters checked against its family's, the defaults filled in."""
    if family not in info.family_names:
        raise SpecError(
            where,
            f"{path}.family",
            "is not a family of this workload",
            family,
            f"use one of: {', '.join(info.family_names)}",
        )
    fam = info.family(family)
    for key, value in params.items():
        if key not in fam.names:
            raise SpecError(
                where,
                f"{path}.{key}",
                f"is not a parameter of family {family}",
                key,
                f"use only: {', '.join(fam.names + tuple(sorted(_CONFIG_FIXED - {'id', 'family'})))}",
            )
        if not fam.param(key).admits(value):
            raise SpecError(
                where,
                f"{path}.{key}",
                f"must be {fam.param(key).describe()}",
                value,
                "choose a value in that range",
            )
    return {p.name: params.get(p.name, p.default) for p in fam.params}


def _unique(values: list[str] | tuple[str, ...], where: str, path: str, key: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise SpecError(
                where,
                f"{path}[{i}].{key}" if key != "allow" else f"{path}.allow[{i}]",
                "must be unique",
                value,
                "remove or rename the duplicate",
            )
        seen.add(value)
