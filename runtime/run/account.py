"""The run's account: charges at the offer and stage the run is on, storage of its checkpoints,
and its event log (``events.jsonl``, the ledger's event lines, MLflow tags).

On an emulated offer a charge without ``seconds`` covers no time: the real time spent there
is not the offer's time, so the caller gives the virtual seconds or the charge is zero.
"""

from __future__ import annotations

import json
import time
from typing import Any

from runtime.money.meter import Meter
from runtime.run.state import RunSetup, RunState

__all__ = ["Account", "EventLog", "SECONDS_PER_MONTH"]

SECONDS_PER_MONTH = 730.0 * 3600.0


class Account:
    """Charges the meter for a run, at the run's current offer and stage."""

    def __init__(self, setup: RunSetup, meter: Meter) -> None:
        self.setup = setup
        self.meter = meter

    def now(self, state: RunState) -> float:
        return self.meter.now(self.setup.emulated(state.hw))

    def charge(self, state: RunState, kind: str, what: str, seconds: float | None = None,
               **extra: Any) -> float:
        emu = self.setup.emulated(state.hw)
        if emu and seconds is None:
            seconds = 0.0
        return self.meter.charge(kind, state.hw, stage=state.stage_name, what=what, emulated=emu,
                                 seconds=seconds, **extra)

    def storage_rate(self, state: RunState) -> float:
        """Dollars per second of keeping the retained checkpoints on the current offer."""
        offer = self.setup.offer(state.hw)
        return offer.storage_usd_per_gb_month * sum(state.kept_bytes) / 1e9 / SECONDS_PER_MONTH

    def charge_storage(self, state: RunState, what: str) -> None:
        """Storage of the kept checkpoints from the last storage charge until now."""
        dt = self.meter.t - state.storage_t
        state.storage_t = self.meter.t
        usd = self.storage_rate(state) * dt
        if usd > 0:
            self.meter.charge_amount("storage", usd, state.hw, stage=state.stage_name, what=what,
                                     emulated=self.setup.emulated(state.hw), seconds_covered=dt,
                                     bytes=sum(state.kept_bytes))

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
            f.write(json.dumps(ev) + "\n")
        if self.handle is not None and self.tracker is not None:
            self.tracker.set_tags(self.handle, {f"paretrain.event.{len(self.events)}": json.dumps(ev)})

    def ledger(self, name: str, state: RunState, **data: Any) -> None:
        """The same event as a zero-dollar ledger line (what ``--resume`` reads back)."""
        self.meter.event(name, state.hw, state.stage_name, **data)
