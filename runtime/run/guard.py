"""The hard budget cap: what the next step, evaluation and checkpoint would cost, and when
checking before every step can be skipped safely.

Before every step the executor reserves what the next step, a due evaluation, a final
checkpoint and the storage accrued until then would cost, priced exactly over the coming
interval (``runtime.money.prices.cost``); if the spend plus that reserve would pass the budget, it
stops. On emulated hardware (virtual clock) durations are known in advance, so the guarantee
is exact; on the real clock the reserve takes three times the slowest recent step as its
margin. A *safe window* (up to a second of run time, no price, availability or speed change in
it, the spend under a threshold) lets the steps inside it skip the full check.
"""

from __future__ import annotations

import math

from planner.spec import Spec
from planner.throughput import virtual_checkpoint_s
from runtime.money.report import project_spend

__all__ = ["BudgetGuard"]

_SECONDS_PER_MONTH = 730.0 * 3600.0


class BudgetGuard:
    """Mixin of ``runtime.run.executor.Executor``: the reserve and the checks built on it."""

    spec: Spec

    def _storage_rate(self) -> float:
        """Dollars per second of keeping the retained checkpoints on the current offer."""
        offer = self.offers[self.hw]
        return offer.storage_usd_per_gb_month * sum(self.kept_bytes) / 1e9 / _SECONDS_PER_MONTH

    def charge_storage(self, what: str) -> None:
        dt = self.meter.t - self.storage_t
        self.storage_t = self.meter.t
        usd = self._storage_rate() * dt
        if usd > 0:
            self.meter.charge_amount("storage", usd, self.hw, stage=self.stage_name, what=what,
                                     emulated=self.emulated(self.hw), seconds_covered=dt,
                                     bytes=sum(self.kept_bytes))

    # -- durations -------------------------------------------------------------------------

    def _step_s(self) -> float:
        """Seconds the next step is expected to take (exact on the virtual clock)."""
        st, t = self.stage, self.meter.now(self.emulated(self.hw))
        slow = self.prices.slowdown(self.hw, t)
        if self.emulated(self.hw):
            return st.step_s * slow
        return 3.0 * max(self.slowest, st.step_s) * slow + 0.002

    def _eval_s(self) -> float:
        if self.emulated(self.hw):
            return self.stage.eval_s * self.prices.slowdown(self.hw, self.meter.t)
        return 2.0 * max(self.eval_real, self.stage.eval_s) + 0.002

    def _ckpt_s(self) -> float:
        if self.emulated(self.hw):
            return self._virtual_ckpt_s()
        return 3.0 * self.ckpt_real + 0.01

    def _virtual_ckpt_s(self) -> float:
        """Writing a checkpoint on an emulated offer (``planner.throughput.virtual_checkpoint_s``):
        its size is bounded in advance, so the reserve is exact."""
        return virtual_checkpoint_s(self.trainer.parameter_count())

    # -- the run -----------------------------------------------------------------------------

    def _cap(self, own_spent: float) -> float:
        """The run's budget: the training envelope, or what the project ceiling leaves."""
        cap = self.spec.budget.train_usd
        ceiling = self.spec.budget.project_ceiling_usd
        if ceiling is not None:
            others = project_spend(self.ledger_dir, self.spec.budget.period) - own_spent
            cap = min(cap, own_spent + max(0.0, ceiling - others))
        return cap

    def _over_budget(self) -> bool:
        emu = self.emulated(self.hw)
        now = self.meter.now(emu)
        step_s = self._step_s()
        due_eval = self.trainer.samples_seen + self.trainer.batch_size >= self.next_eval
        ahead = step_s + (self._eval_s() if due_eval else 0.0)
        ckpt = self._ckpt_s()
        # the final checkpoint may come now (if we stop) or after the step: reserve the dearer
        reserve = self.meter.cost_ahead(self.hw, now, ahead) + max(
            self.meter.cost_ahead(self.hw, now, ckpt), self.meter.cost_ahead(self.hw, now + ahead, ckpt))
        storage = self._storage_rate() * (now + ahead + ckpt - self.storage_t)
        return self.meter.spent + self.meter.pending_usd(self.hw, emu) + reserve + storage > self.budget

    def _open_window(self, now: float, emu: bool) -> None:
        """Skip the full checks for the next steps while it is safe: up to one second of run time,
        ending before the next price, availability or speed change minus a full reserve, and
        while the spend stays under the budget minus a reserve at the window's (constant) price.
        A step slower than the slowest seen when the window opened closes it."""
        window = 1.0
        reserve_s = self._step_s() + self._eval_s() + self._ckpt_s() + 0.01
        changes = self.prices.changes(self.hw, now, now + window + reserve_s)
        end = min(now + window, (changes[0] if changes else math.inf) - reserve_s)
        if end <= now:
            self.fast_until = 0.0
            return
        price_s = self.meter.scale * self.prices.price_usd_per_h(self.hw, now) / 3600.0
        storage = self._storage_rate() * (end + reserve_s - self.storage_t)
        self.fast_spend = self.budget - price_s * reserve_s - storage
        self.fast_until = end
        self.fast_slow = self.prices.slowdown(self.hw, now)
        self.fast_price_s = price_s
        self.window_slowest = self.slowest
        key = (self.hw, self.stage_name, emu)
        if self._charger_key != key:
            self._charger_key = key
            self._charger = self.meter.step_charger(self.hw, self.stage_name, emu)

    def planned_price(self, hardware: str) -> float:
        return self.offers[hardware].price_usd_per_h

    def reserve_usd(self) -> float:
        """What the next step, an evaluation and a final checkpoint would cost now."""
        now = self.meter.now(self.emulated(self.hw))
        return self.meter.cost_ahead(self.hw, now, self._step_s() + self._eval_s() + self._ckpt_s())

    def _transition_over_budget(self) -> bool:
        """Whether ending this stage (checkpoint, move to the next stage's offer, a final
        checkpoint there) could pass the budget."""
        nxt = self.stages[self.stage_i + 1].hardware if self.stage_i + 1 < len(self.stages) else self.hw
        return self.change_over_budget(nxt)

    def change_over_budget(self, new_hw: str, extra_s: float = 0.0) -> bool:
        """Whether a checkpoint now, moving to ``new_hw`` (its egress, switch time) and a final
        checkpoint there, plus ``extra_s`` seconds of storage-only waiting, could pass the budget."""
        emu = self.emulated(self.hw)
        now = self.meter.now(emu)
        ckpt = self._ckpt_s()
        need = self.meter.pending_usd(self.hw, emu) + self.meter.cost_ahead(self.hw, now, ckpt)
        need += self._storage_rate() * (now + 2 * ckpt + extra_s - self.storage_t)
        after = now + ckpt + extra_s
        if new_hw != self.hw:
            offer = self.offers[new_hw]
            need += self.offers[self.hw].egress_usd_per_gb * \
                (self.kept_bytes[-1] if self.kept_bytes else 0) / 1e9
            move = offer.switch_s if self.emulated(new_hw) else 0.05
            need += self.meter.cost_ahead(new_hw, after, move + ckpt)
        else:
            need += self.meter.cost_ahead(self.hw, after, ckpt)
        return self.meter.spent + need > self.budget
