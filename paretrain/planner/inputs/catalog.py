"""Hardware offers: the local devices and the cloud price catalog (a data file).

An ``Offer`` is one way to buy compute: ``local/cpu-2`` (two threads of this machine, priced
per vCPU-hour from the spec) or ``aws/g5.xlarge`` (a catalog row). Spot variants of catalog
rows get the id suffix ``:spot``.

Billing: a provider bills the time an instance is held (from provisioning until it is released)
in increments, with a minimum: ``Offer.billed_s``. AWS and GCP bill Linux on-demand and spot
instances per second with a one-minute minimum; Lambda by the minute (each catalog row cites its
source). A local offer is this machine, priced per the spec and never rented: its increment is
1 s with no minimum and its charges are not rounded (the meter charges the real time held).

>>> from paretrain.planner.inputs.spec import HardwareSpec
>>> offers = local_offers([LocalDevice("local/cpu-2", "cpu", 2, 2, 8.0)], HardwareSpec(allow=("local/cpu-2",)))
>>> round(offers[0].price_usd_per_h, 4)
0.085
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import TYPE_CHECKING

from paretrain.planner.errors import SpecError

if TYPE_CHECKING:
    from paretrain.planner.inputs.spec import HardwareSpec

__all__ = [
    "CATALOG_COLUMNS",
    "LOCAL_PRICE_SOURCE",
    "LocalDevice",
    "Offer",
    "builtin_catalog_text",
    "local_offers",
    "parse_catalog",
]


@dataclass(frozen=True, slots=True)
class LocalDevice:
    """A device present on this machine: ``local/cpu-1``, ``local/cpu-2``, ``local/cuda:0``."""

    id: str
    kind: str  # "cpu" | "gpu"
    threads: int
    vcpus: int
    memory_gib: float
    accelerator: str = ""
    #: the precisions it trains in (``paretrain.runtime.train.devices`` probes autocast on it); a
    #: precision not here is neither profiled nor planned on it
    precisions: tuple[str, ...] = ("fp32", "bf16")


CATALOG_COLUMNS = (
    "provider",
    "instance_type",
    "accelerator",
    "accelerator_count",
    "vcpus",
    "memory_gib",
    "price_usd_per_h",
    "spot_price_usd_per_h",
    "peak_tflops_fp32",
    "peak_tflops_bf16",
    "mem_bw_gbps",
    "spot_interruption_per_h",
    "billing_increment_s",
    "billing_minimum_s",
    "source",
    "as_of",
)

LOCAL_PRICE_SOURCE = (
    "spec hardware.prices (default: AWS EC2 c6i.large on-demand, us-east-1, "
    "$0.085/h for 2 vCPU = $0.0425 per vCPU-hour, aws.amazon.com/ec2/pricing/on-demand, "
    "read 2026-11-28)"
)


@dataclass(frozen=True, slots=True)
class Offer:
    """One hardware offer the planner may choose, with its price and capabilities."""

    id: str
    provider: str
    kind: str  # "cpu" | "gpu"
    price_usd_per_h: float
    memory_gib: float
    vcpus: int = 1
    accelerator: str = ""
    accelerator_count: int = 0
    peak_tflops_fp32: float = 0.0
    peak_tflops_bf16: float = 0.0
    mem_bw_gbps: float = 0.0
    interruption_per_h: float = 0.0
    spot: bool = False
    local: bool = False
    threads: int = 0
    device: str = "cpu"
    source: str = ""
    as_of: str = ""
    storage_usd_per_gb_month: float = 0.0
    egress_usd_per_gb: float = 0.0
    switch_s: float = 0.0  # time to move a run onto this offer (provision, restore)
    billing_increment_s: float = 0.0  # the provider bills held time in these steps (0: continuously)
    billing_minimum_s: float = 0.0  # and at least this much per hold
    #: forming a group of several workers here, when nobody measured it: the launcher and worker
    #: processes start on each instance (imports, data, model) and rendezvous (c10d)
    rendezvous_s: float = 30.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.price_usd_per_h) and self.price_usd_per_h >= 0):
            raise ValueError(f"offer {self.id}: `price_usd_per_h >= 0` must hold, got {self.price_usd_per_h}")
        if self.kind not in ("cpu", "gpu"):
            raise ValueError(f"offer {self.id}: `kind` must be cpu or gpu, got {self.kind!r}")
        for name in ("billing_increment_s", "billing_minimum_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"offer {self.id}: `{name} >= 0` must hold, got {value}")

    def billed_s(self, held_s: float) -> float:
        """Seconds the provider bills for holding this offer ``held_s`` seconds in one go:
        ``max(minimum, ceil(held / increment) * increment)``; a local offer's are not rounded.

        >>> Offer("aws/x", "aws", "gpu", 1.0, 16.0, billing_increment_s=1, billing_minimum_s=60).billed_s(61.2)
        62.0
        """
        if self.local or held_s <= 0:
            return max(held_s, 0.0)
        inc = self.billing_increment_s
        billed = math.ceil(held_s / inc - 1e-9) * inc if inc > 0 else held_s
        return float(max(billed, self.billing_minimum_s))

    @property
    def price_usd_per_s(self) -> float:
        return self.price_usd_per_h / 3600.0


def local_offers(devices: Sequence[LocalDevice], hw: HardwareSpec) -> list[Offer]:
    """Offers for the local devices, priced per vCPU-hour (CPU) or GPU-hour from the spec."""
    if hw.local == "none":
        return []
    out = []
    for d in devices:
        if d.kind == "cpu":
            price = d.vcpus * hw.cpu_vcpu_usd_per_h
        else:
            price = hw.gpu_usd_per_h
        out.append(
            Offer(
                id=d.id,
                provider="local",
                kind=d.kind,
                price_usd_per_h=price,
                memory_gib=d.memory_gib,
                vcpus=d.vcpus,
                accelerator=d.accelerator,
                accelerator_count=1 if d.kind == "gpu" else 0,
                local=True,
                threads=d.threads,
                device="cpu" if d.kind == "cpu" else d.id.split("/", 1)[1],
                source=LOCAL_PRICE_SOURCE,
                as_of="2026-11-28",
                billing_increment_s=1.0,
            )
        )
    return out


def builtin_catalog_text() -> str:
    """The shipped catalog CSV (``paretrain/planner/inputs/data/catalog.csv``)."""
    return (
        resources.files("paretrain.planner.inputs.data").joinpath("catalog.csv").read_text(encoding="utf-8")
    )


def parse_catalog(text: str, where: str = "catalog.csv") -> list[Offer]:
    """Parse a catalog CSV; every row becomes an on-demand offer, plus a spot one when priced."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CATALOG_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise SpecError(
            where,
            "header",
            "must name every catalog column",
            missing,
            f"add the columns {', '.join(missing)}",
        )
    return [offer for line, row in enumerate(reader, start=2) for offer in _row_offers(row, line, where)]


def _row_offers(row: dict[str, str], line: int, where: str) -> list[Offer]:
    """One catalog row: its on-demand offer, and its spot offer when the row prices one."""

    def num(col: str) -> float:
        return _number(row, col, line, where)

    count = int(num("accelerator_count"))
    on_demand = Offer(
        id=f"{row['provider']}/{row['instance_type']}",
        provider=row["provider"],
        kind="gpu" if count > 0 else "cpu",
        price_usd_per_h=num("price_usd_per_h"),
        memory_gib=num("memory_gib"),
        vcpus=int(num("vcpus")),
        accelerator=row["accelerator"],
        accelerator_count=count,
        peak_tflops_fp32=num("peak_tflops_fp32"),
        peak_tflops_bf16=num("peak_tflops_bf16"),
        mem_bw_gbps=num("mem_bw_gbps"),
        source=row["source"],
        as_of=row["as_of"],
        storage_usd_per_gb_month=float(row.get("storage_usd_per_gb_month") or 0.0),
        egress_usd_per_gb=float(row.get("egress_usd_per_gb") or 0.0),
        switch_s=float(row.get("switch_s") or 0.0),
        billing_increment_s=num("billing_increment_s"),
        billing_minimum_s=num("billing_minimum_s"),
    )
    spot = num("spot_price_usd_per_h")
    if spot <= 0:
        return [on_demand]
    spot_offer = replace(
        on_demand,
        id=f"{on_demand.id}:spot",
        price_usd_per_h=spot,
        spot=True,
        interruption_per_h=num("spot_interruption_per_h"),
    )
    return [on_demand, spot_offer]


def _number(row: dict[str, str], col: str, line: int, where: str) -> float:
    """A numeric catalog cell (empty: 0), finite and >= 0."""
    try:
        value = float(row[col]) if row[col] not in ("", None) else 0.0
    except ValueError:
        raise SpecError(
            where, f"line {line}.{col}", "must be a number", row[col], "write a plain number"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise SpecError(
            where,
            f"line {line}.{col}",
            "must be a finite number >= 0",
            row[col],
            "write a non-negative number",
        )
    return value
