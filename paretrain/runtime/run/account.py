"""The run's account: charges at the offer and stage the run is on, storage of its checkpoints,
and its event log (``events.jsonl``, the ledger's event lines, MLflow tags). The account only
reads the run state: a storage charge returns what changed (``StorageCharged``) to the executor.

On an emulated offer a charge without ``seconds`` covers no time: the real time spent there
is not the offer's time, so the caller gives the virtual seconds or the charge is zero.

Billing holds: a provider bills the time an instance is held, from provisioning to release,
rounded up to its increment and at least its minimum (``paretrain.planner.inputs.catalog.Offer.billed_s``). On
an emulated offer the account opens a hold when the run provisions, moves onto or restarts on
it, and settles it when the run leaves it, pauses or ends: one extra charge (kind compute, what
"billing increment") for the rest of the increment or the minimum, at the offer's price when the
hold began (a minimum is the price of a machine's first minute; what an increment rounds up is
a fraction of one) and the instances of the hold's last charge. A preemption ends the hold with no such charge: a provider that interrupts
an instance bills the seconds used at most (AWS: nothing in its first hour). Local offers are
not rented: they have no hold.
"""

from __future__ import annotations

import json
import time
from typing import Any

from paretrain.runtime.files import strict_json
from paretrain.runtime.money.meter import Meter
from paretrain.runtime.run.changes import StorageCharged
from paretrain.runtime.run.state import RunSetup, RunState

__all__ = ["SECONDS_PER_MONTH", "Account", "EventLog"]

SECONDS_PER_MONTH = 730.0 * 3600.0


class Account:
    """Charges the meter for a run, at the run's current offer and stage."""

    def __init__(self, setup: RunSetup, meter: Meter) -> None:
        self.setup = setup
        self.meter = meter
        self.hold_t: float | None = None  # run time the current emulated offer's hold began
        self._hold_scale = 1  # instances at the hold's last charge

    def now(self, state: RunState) -> float:
        return self.meter.now(self.setup.emulated(state.hw))

    def charge(
        self, state: RunState, kind: str, what: str, seconds: float | None = None, **extra: Any
    ) -> float:
        emu = self.setup.emulated(state.hw)
        if emu and seconds is None:
            seconds = 0.0
        if self.hold_t is not None:
            self._hold_scale = self.meter.scale
        return self.meter.charge(
            kind, state.hw, stage=state.stage_name, what=what, emulated=emu, seconds=seconds, **extra
        )

    # -- billing holds -----------------------------------------------------------------------
    def open_hold(self, state: RunState) -> None:
        """The run holds its offer from now on (an emulated one: a local offer has no hold)."""
        self.hold_t = self.meter.t if self.setup.emulated(state.hw) else None
        self._hold_scale = self.meter.scale

    def remainder_s(self, hardware: str, held_s: float) -> float:
        """Seconds billed beyond ``held_s`` seconds held on ``hardware`` (0 on a local offer)."""
        if not self.setup.emulated(hardware):
            return 0.0
        return max(self.setup.offer(hardware).billed_s(held_s) - held_s, 0.0)

    def settle_usd(self, state: RunState, at: float) -> float:
        """What settling the current hold at run time ``at`` would charge."""
        if self.hold_t is None:
            return 0.0
        return self._usd_s(state.hw, self.hold_t, self.meter.scale) * self.remainder_s(
            state.hw, at - self.hold_t
        )

    def _usd_s(self, hardware: str, at: float, scale: int) -> float:
        return scale * self.meter.prices.price_usd_per_h(hardware, at) / 3600.0

    def remainder_max_usd(self, state: RunState, at: float) -> float:
        """The most a settle at ``at`` or later could charge: the rest of the minimum, or at most
        one increment beyond it."""
        if self.hold_t is None:
            return 0.0
        offer = self.setup.offer(state.hw)
        most_s = max(offer.billing_minimum_s - (at - self.hold_t), offer.billing_increment_s, 0.0)
        return self._usd_s(state.hw, self.hold_t, self.meter.scale) * most_s

    def held_s(self) -> float:
        """Seconds the current hold has lasted (0 on a local offer, which has none)."""
        return 0.0 if self.hold_t is None else max(self.meter.t - self.hold_t, 0.0)

    def interrupted_usd(self, hold: tuple[str, float, float] | None) -> float:
        """What the hold a killed process left open is billed beyond the time it charged: ``hold``
        is (offer, run time it began, run time the process died), ``paretrain.runtime.run.runs.ledger_end``
        and the ledger's end."""
        if hold is None:
            return 0.0
        hw, began, ended = hold
        return self._usd_s(hw, began, self.meter.scale) * self.remainder_s(hw, ended - began)

    def settle_interrupted(self, state: RunState, hold: tuple[str, float, float] | None) -> float:
        """Charge ``interrupted_usd``: one billing increment line marked ``interrupted``."""
        usd = self.interrupted_usd(hold)
        if hold is None or usd <= 0:
            return 0.0
        hw, began, ended = hold
        held = ended - began
        return self.meter.charge_amount(
            "compute",
            usd,
            hw,
            stage=state.stage_name,
            what="billing increment",
            emulated=True,
            billed_s=round(self.remainder_s(hw, held), 6),
            held_s=round(held, 6),
            interrupted=True,
        )

    def drop_hold(self) -> None:
        """The provider took the machine back (a preemption): the hold ends, nothing more billed."""
        self.hold_t = None

    def settle(self, state: RunState) -> float:
        """End the hold on the current offer: charge the rest of its increment or its minimum."""
        if self.hold_t is None:
            return 0.0
        began, self.hold_t = self.hold_t, None
        held = self.meter.t - began
        extra = self.remainder_s(state.hw, held)
        if extra <= 0:
            return 0.0
        usd = self._usd_s(state.hw, began, self._hold_scale) * extra
        return self.meter.charge_amount(
            "compute",
            usd,
            state.hw,
            stage=state.stage_name,
            what="billing increment",
            emulated=True,
            billed_s=round(extra, 6),
            held_s=round(held, 6),
        )

    def storage_rate(self, state: RunState) -> float:
        """Dollars per second of keeping the retained checkpoints on the current offer."""
        offer = self.setup.offer(state.hw)
        return offer.storage_usd_per_gb_month * sum(state.kept_bytes) / 1e9 / SECONDS_PER_MONTH

    def charge_storage(self, state: RunState, what: str) -> StorageCharged:
        """Charge the storage of the kept checkpoints from the last storage charge until now;
        returns the change (storage charged up to now) for the executor to apply."""
        dt = self.meter.t - state.storage_t
        usd = self.storage_rate(state) * dt
        if usd > 0:
            self.meter.charge_amount(
                "storage",
                usd,
                state.hw,
                stage=state.stage_name,
                what=what,
                emulated=self.setup.emulated(state.hw),
                seconds_covered=dt,
                bytes=sum(state.kept_bytes),
            )
        return StorageCharged(self.meter.t)

    def egress_usd(self, state: RunState) -> float:
        """Moving the newest checkpoint off the current offer."""
        size = state.kept_bytes[-1] if state.kept_bytes else 0
        return self.setup.offer(state.hw).egress_usd_per_gb * size / 1e9


class EventLog:
    """The run's events: ``events.jsonl`` in its folder, and a tag on its MLflow run."""

    def __init__(self, setup: RunSetup, meter: Meter) -> None:
        self.path = setup.run_dir / "events.jsonl"
        self.meter = meter
        self.events: list[dict[str, Any]] = []
        self.tracker: Any = None
        self.handle: str | None = None

    def attach(self, tracker: Any, handle: str | None) -> None:
        self.tracker, self.handle = tracker, handle

    def __call__(self, name: str, **data: Any) -> None:
        ev = {"t": round(time.time(), 3), "t_run": round(self.meter.t, 3), "event": name, **data}
        self.events.append(ev)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(strict_json(ev) + "\n")
        if self.handle is not None and self.tracker is not None:
            self.tracker.set_tags(self.handle, {f"paretrain.event.{len(self.events)}": json.dumps(ev)})

    def ledger(self, name: str, state: RunState, **data: Any) -> None:
        """The same event as a zero-dollar ledger line (what ``--resume`` reads back)."""
        self.meter.event(name, state.hw, state.stage_name, **data)
