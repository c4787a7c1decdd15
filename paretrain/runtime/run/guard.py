"""The hard budget cap: what the next step, evaluation and checkpoint would cost, and when
checking before every step can be skipped safely.

Before every step the executor asks ``BudgetGuard.over_budget``: it reserves what the next
step, a due evaluation, a final checkpoint and the storage accrued until then would cost,
priced exactly over the coming interval (``paretrain.runtime.money.prices.cost``); if the spend plus that
reserve would pass the budget, the run stops. On emulated hardware (virtual clock) durations
are known in advance, so the guarantee is exact; on the real clock each of the step, the
evaluation and the checkpoint is reserved by the rule of ``paretrain.runtime.money.reserve``
(three times the slowest recent one), plus the longest a pending rendezvous of a
data-parallel stage's processes may take (``RunState.connect_s``). On an emulated offer the reserve also holds what
ending the billing hold would charge (``paretrain.runtime.run.account``: the rest of the increment or
the minimum), and a run's start reserves its provisioning. A *safe window* (``Window``: up to a
second of run time, no price, availability or speed change in it, the spend under a threshold)
lets the steps inside it skip the full check. The guard only reads the run's state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from paretrain.planner.inputs.spec import Spec
from paretrain.planner.measure.throughput import virtual_checkpoint_s
from paretrain.runtime.money.ledger import Ledger, read_charges
from paretrain.runtime.money.prices import PriceSource
from paretrain.runtime.money.report import committed_usd, period_start
from paretrain.runtime.money.reserve import reserve_s
from paretrain.runtime.run.account import Account
from paretrain.runtime.run.state import RunSetup, RunState

__all__ = ["BudgetGuard", "Window", "run_cap"]


def run_cap(spec: Spec, ledger: Ledger) -> float:
    """The run's budget: the training envelope, or what the project ceiling leaves of it after
    what the project's other ledgers hold this period (``committed_usd``: their spend, and what
    other running runs may still spend). ``ledger`` is the run's own, open."""
    cap = spec.budget.train_usd
    ceiling = spec.budget.project_ceiling_usd
    if ceiling is not None:
        since = period_start(spec.budget.period)
        others = committed_usd(ledger.path.parent, spec.budget.period, ledger.path)
        # the cap bounds the run's whole spend; what it spent before this period is not the ceiling's
        before = math.fsum(c["usd"] for c in read_charges(ledger.path) if c.get("t", 0.0) < since)
        cap = min(cap, before + max(0.0, ceiling - others))
    return cap


@dataclass(frozen=True)
class Window:
    """A stretch of run time in which steps need no full check: it ends at ``until`` or when
    the spend reaches ``spend``; price per second and speed factor are constant inside it."""

    until: float
    spend: float
    slow: float
    price_s: float
    slowest: float  # a real step slower than this closes the window
    charger: Callable[[float, float, int], float]


class BudgetGuard:
    """The reserve and the checks built on it, for one run."""

    def __init__(
        self, setup: RunSetup, account: Account, prices: PriceSource, budget: float, param_count: int
    ) -> None:
        self.setup, self.account, self.prices = setup, account, prices
        self.meter = account.meter
        self.budget = budget
        self.param_count = param_count
        self._charger_key: tuple[str, str, bool] | None = None
        self._charger: Callable[[float, float, int], float] | None = None

    # -- durations ---------------------------------------------------------------------------
    def step_s(self, state: RunState) -> float:
        """Seconds the next step is expected to take (exact on the virtual clock)."""
        emu = self.setup.emulated(state.hw)
        slow = self.prices.slowdown(state.hw, self.meter.now(emu))
        if emu:
            return state.stage.step_s * slow + state.form_s
        return reserve_s(state.stage.step_s * slow, state.slowest * slow) + state.connect_s

    def eval_s(self, state: RunState) -> float:
        if self.setup.emulated(state.hw):
            return state.stage.eval_s * self.prices.slowdown(state.hw, self.meter.t)
        return reserve_s(state.stage.eval_s, state.eval_real)

    def ckpt_s(self, state: RunState) -> float:
        if self.setup.emulated(state.hw):
            return self.virtual_ckpt_s()
        return reserve_s(state.ckpt_real)

    def virtual_ckpt_s(self) -> float:
        """Writing a checkpoint on an emulated offer: its size is bounded in advance, so the
        reserve is exact (``paretrain.planner.measure.throughput.virtual_checkpoint_s``)."""
        return virtual_checkpoint_s(self.param_count)

    # -- checks ------------------------------------------------------------------------------
    def over_budget(self, state: RunState, extra_s: float = 0.0) -> bool:
        """Whether the next step (with a due evaluation and a final checkpoint) could pass it,
        after ``extra_s`` more seconds held (a refit of the run's curve on the real clock)."""
        emu = self.setup.emulated(state.hw)
        now = self.meter.now(emu)
        due_eval = state.samples + state.batch_size >= state.next_eval
        ahead = extra_s + self.step_s(state) + (self.eval_s(state) if due_eval else 0.0)
        ckpt = self.ckpt_s(state)
        # the final checkpoint may come now (if we stop) or after the step: reserve the dearer
        reserve = self.meter.cost_ahead(state.hw, now, ahead) + max(
            self.meter.cost_ahead(state.hw, now, ckpt), self.meter.cost_ahead(state.hw, now + ahead, ckpt)
        )
        reserve += max(
            self.account.settle_usd(state, now + ckpt), self.account.settle_usd(state, now + ahead + ckpt)
        )
        storage = self.account.storage_rate(state) * (now + ahead + ckpt - state.storage_t)
        return self.meter.spent + self.meter.pending_usd(state.hw, emu) + reserve + storage > self.budget

    def stop_at(self, state: RunState) -> float:
        """On the real clock, the ``time.perf_counter()`` moment past which holding the hardware
        would leave less of the budget than a final checkpoint costs (with the hold's settling
        and the storage accrued): the step or evaluation still running then is stopped
        (``paretrain.runtime.train.deadline``). ``inf`` on the virtual clock, where a step costs
        the plan's time whatever it takes."""
        if self.setup.emulated(state.hw):
            return math.inf
        now = self.meter.now(False)
        t0 = time.perf_counter()
        rate = self.account.storage_rate(state)
        left = (
            self.budget
            - self.meter.spent
            - self.meter.pending_usd(state.hw, False)
            - self.account.remainder_max_usd(state, now)
            - rate * (now - state.storage_t)
            - self.meter.cost_ahead(state.hw, now, self.ckpt_s(state))
        )
        if left <= 0:
            return t0

        def need(s: float) -> float:  # what holding it ``s`` more seconds costs
            return self.meter.cost_ahead(state.hw, now, s) + rate * s

        price = need(1.0)
        hi = left / price if price > 0 else math.inf
        if math.isinf(hi):
            return math.inf
        if not self.prices.changes(state.hw, now, now + hi):
            return t0 + hi
        lo = 0.0  # a price change ahead: the longest hold that fits, by bisection
        for _ in range(60):
            if need(hi) > left:
                break
            lo, hi = hi, hi * 2
        else:
            return math.inf  # free from some point on
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if need(mid) <= left else (lo, mid)
        return t0 + lo

    def start_over_budget(self, state: RunState) -> bool:
        """Whether starting the run (provisioning an emulated offer, the start checkpoint) and a
        first step with its final checkpoint, the hold settled after them, could pass it."""
        if not self.setup.emulated(state.hw):
            return self.over_budget(state)
        now, ckpt = self.meter.t, self.ckpt_s(state)
        held = self.setup.offer(state.hw).switch_s + ckpt + self.step_s(state) + ckpt
        need = self.meter.cost_ahead(state.hw, now, held) + self._new_hold_usd(state.hw, now, held)
        return self.meter.spent + need > self.budget

    def _new_hold_usd(self, hardware: str, at: float, held: float) -> float:
        """What settling a hold on ``hardware`` begun at ``at`` after ``held`` seconds would charge."""
        price_s = self.meter.scale * self.prices.price_usd_per_h(hardware, at) / 3600.0
        return price_s * self.account.remainder_s(hardware, held)

    def reserve_usd(self, state: RunState) -> float:
        """What the next step, an evaluation and a final checkpoint would cost now."""
        now = self.meter.now(self.setup.emulated(state.hw))
        return self.meter.cost_ahead(
            state.hw, now, self.step_s(state) + self.eval_s(state) + self.ckpt_s(state)
        )

    def transition_over_budget(self, state: RunState) -> bool:
        """Whether ending this stage (checkpoint, move to the next stage's offer, a final
        checkpoint there) could pass the budget."""
        nxt = state.stages[state.stage_i + 1].hardware if state.stage_i + 1 < len(state.stages) else state.hw
        return self.change_over_budget(state, nxt)

    def change_over_budget(self, state: RunState, new_hw: str, extra_s: float = 0.0) -> bool:
        """Whether a checkpoint now, moving to ``new_hw`` (its egress, switch time) and a final
        checkpoint there, plus ``extra_s`` seconds of storage-only waiting, could pass it."""
        emu = self.setup.emulated(state.hw)
        now = self.meter.now(emu)
        ckpt = self.ckpt_s(state)
        need = self.meter.pending_usd(state.hw, emu) + self.meter.cost_ahead(state.hw, now, ckpt)
        need += self.account.storage_rate(state) * (now + 2 * ckpt + extra_s - state.storage_t)
        after = now + ckpt + extra_s
        if new_hw != state.hw:
            need += self.account.egress_usd(state)
            need += self.meter.cost_ahead(new_hw, after, self.setup.restart_s(new_hw) + ckpt)
        else:
            need += self.meter.cost_ahead(state.hw, after, ckpt)
        if new_hw != state.hw or extra_s > 0:  # the hold ends after the checkpoint; a new one begins
            need += self.account.settle_usd(state, now + ckpt)
            restart = self.setup.restart_s(new_hw) if new_hw != state.hw else 0.0
            need += self._new_hold_usd(new_hw, after, restart + ckpt)
        else:
            need += self.account.settle_usd(state, now + 2 * ckpt)
        return self.meter.spent + need > self.budget

    def restore_over_budget(
        self, state: RunState, hardware: str, at: float, extra_usd: float = 0.0, checkpoints: int = 1
    ) -> bool:
        """Whether restoring onto ``hardware`` at run time ``at`` (and ``checkpoints`` final
        checkpoints) could pass the budget, ``extra_usd`` being owed before it."""
        ahead = self.setup.restart_s(hardware) + checkpoints * self.ckpt_s(state)
        need = (
            extra_usd + self.meter.cost_ahead(hardware, at, ahead) + self._new_hold_usd(hardware, at, ahead)
        )
        return self.meter.spent + need > self.budget

    def window(self, state: RunState, now: float) -> Window | None:
        """A safe window from ``now``: up to one second of run time, ending before the next price,
        availability or speed change minus a full reserve, while the spend stays under the
        budget minus a reserve at the window's (constant) price."""
        reserve_s = self.step_s(state) + self.eval_s(state) + self.ckpt_s(state) + 0.01
        changes = self.prices.changes(state.hw, now, now + 1.0 + reserve_s)
        end = min(now + 1.0, (changes[0] if changes else math.inf) - reserve_s)
        if end <= now:
            return None
        price_s = self.meter.scale * self.prices.price_usd_per_h(state.hw, now) / 3600.0
        storage = self.account.storage_rate(state) * (end + reserve_s - state.storage_t)
        key = (state.hw, state.stage_name, self.setup.emulated(state.hw))
        if self._charger_key != key or self._charger is None:
            self._charger_key = key
            self._charger = self.meter.step_charger(*key)
        settle = self.account.remainder_max_usd(state, now)  # the hold settled at any point of the window
        return Window(
            until=end,
            spend=self.budget - price_s * reserve_s - storage - settle,
            slow=self.prices.slowdown(state.hw, now),
            price_s=price_s,
            slowest=state.slowest,
            charger=self._charger,
        )
