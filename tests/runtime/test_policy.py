"""The pure decision policy and its drift detectors: no torch, no clocks."""

from __future__ import annotations

import math
import random

import pytest

from paretrain.runtime.adapt.drift import Detector
from paretrain.runtime.adapt.policy import Action, Observation, Policy


def obs(**kw) -> Observation:
    base = dict(
        t_s=100.0,
        spent_usd=1.0,
        budget_usd=10.0,
        deadline_s=1000.0,
        spend_rate_ratio=1.0,
        throughput_ratio=1.0,
        convergence_ratio=1.0,
        projected_cost_usd=5.0,
        projected_end_s=500.0,
        price_ratio=1.0,
        pause_until_s=None,
        remaining_s=400.0,
        val_loss=1.0,
    )
    base.update(kw)
    return Observation(**base)


def test_steady_run_continues():
    p = Policy(window=3)
    assert all(p.decide(obs(t_s=100.0 + i)).action == Action.CONTINUE for i in range(30))


def test_projected_budget_overrun_replans_at_once_even_in_cooldown():
    p = Policy(cooldown_s=1e9)
    p.adapted(99.0)
    d = p.decide(obs(projected_cost_usd=12.0))
    assert d.action == Action.REPLAN and "budget overrun" in d.reason


def test_projected_deadline_overrun_replans():
    d = Policy().decide(obs(projected_end_s=1200.0))
    assert d.action == Action.REPLAN and "deadline overrun" in d.reason


def test_price_peak_with_slack_pauses_and_without_slack_replans():
    p = Policy(pause_threshold=0.5)
    d = p.decide(obs(price_ratio=3.0, pause_until_s=300.0, projected_cost_usd=12.0))
    assert d.action == Action.PAUSE and d.detail["until"] == 300.0
    # the price falls too late: waiting would pass the deadline
    d = p.decide(obs(price_ratio=3.0, pause_until_s=900.0, remaining_s=400.0, projected_cost_usd=12.0))
    assert d.action == Action.REPLAN


def test_price_peak_without_overrun_still_pauses_when_slack_allows():
    d = Policy().decide(obs(price_ratio=2.0, pause_until_s=200.0))
    assert d.action == Action.PAUSE


def test_a_price_move_since_the_schedule_replans_at_once_either_way_after_cooldown():
    p = Policy(window=50, cooldown_s=10.0)  # the detectors are still learning their baseline
    assert p.decide(obs(price_change=1.15, price_change_offer="aws/g5.xlarge")).action == Action.CONTINUE
    d = p.decide(obs(price_change=2.0, price_change_offer="aws/g5.xlarge"))
    assert d.action == Action.REPLAN and "aws/g5.xlarge x2.00" in d.reason
    assert p.decide(obs(price_change=0.5, price_change_offer="gcp/g2")).action == Action.REPLAN  # cheaper
    p.adapted(95.0)
    assert p.decide(obs(t_s=100.0, price_change=2.0, price_change_offer="x")).action == Action.CONTINUE


def test_a_replan_that_changes_nothing_keeps_the_other_baselines_and_starts_no_cooldown():
    p = Policy(window=4, cooldown_s=1e9)
    for i in range(6):
        p.decide(
            obs(t_s=100.0 + i, throughput_ratio=1.0 + 0.01 * (i % 2), convergence_ratio=1.0 + 0.01 * (i % 2))
        )
    d = p.decide(obs(t_s=106.0, convergence_ratio=1.6))
    assert d.action == Action.REPLAN and "convergence" in d.reason
    p.acknowledge(d)  # the replan kept the schedule
    assert not p.detectors["convergence"].ready and p.detectors["throughput"].ready
    d = p.decide(obs(t_s=107.0, throughput_ratio=0.6))  # a slowdown right after is still caught
    assert d.action == Action.REPLAN and "throughput" in d.reason


def test_throughput_drop_triggers_replan_after_baseline():
    p = Policy(window=4)
    decisions = [p.decide(obs(throughput_ratio=1.0 + 0.01 * (i % 2))).action for i in range(6)]
    assert set(decisions) == {Action.CONTINUE}
    d = p.decide(obs(throughput_ratio=0.6))
    assert d.action == Action.REPLAN and "throughput" in d.reason


def test_cooldown_holds_drift_replans():
    p = Policy(window=2, cooldown_s=50.0)
    p.adapted(90.0)
    for i in range(3):
        p.decide(obs(t_s=91.0 + i))
    assert p.decide(obs(t_s=95.0, throughput_ratio=0.3)).action == Action.CONTINUE


def test_slack_buys_speed_only_when_the_spec_prefers_time():
    cheap = obs(projected_cost_usd=2.0)
    assert Policy().decide(cheap).action == Action.CONTINUE
    d = Policy().decide(obs(projected_cost_usd=2.0, prefer="time"))
    assert d.action == Action.REPLAN and d.objective == "time"


def test_rollback_when_loss_worsens_after_an_adaptation():
    d = Policy(rollback_threshold=0.1).decide(
        obs(val_loss=1.2, loss_before_adaptation=1.0, evals_since_adaptation=1)
    )
    assert d.action == Action.REPLAN and d.rollback
    d = Policy(rollback_threshold=0.1).decide(
        obs(val_loss=1.05, loss_before_adaptation=1.0, evals_since_adaptation=1)
    )
    assert d.action == Action.CONTINUE


def test_after_replan_classifies_the_change():
    p = Policy()
    assert p.after_replan(("a", 32), ("a", 128), True, True, "r").action == Action.RESIZE_BATCH
    assert p.after_replan(("a", 32), ("b", 32), True, True, "r").action == Action.SWITCH
    assert p.after_replan(("a", 32), ("a", 32), True, True, "r").action == Action.CONTINUE
    assert p.after_replan(("a", 32), ("b", 32), False, False, "r").action == Action.STOP


@pytest.mark.parametrize("sd", [0.03, 0.08])
def test_noise_alone_rarely_raises_an_alarm(sd):
    """False positives over 400 seeds of 60 noisy observations each (a long run)."""
    alarms = 0
    for seed in range(400):
        rng = random.Random(seed)
        d = Detector()
        if any(d.update(math.exp(rng.gauss(0.0, sd))) for _ in range(60)):
            alarms += 1
    assert alarms / 400 <= 0.03, alarms


@pytest.mark.parametrize("shift", [1.5, 2.0])
def test_a_persistent_shift_is_detected_within_a_pinned_delay(shift):
    """A step slowdown of x1.5 (throughput / 1.5) with 5% noise: alarm within 3 observations."""
    delays = []
    for seed in range(200):
        rng = random.Random(seed)
        d = Detector()
        for _ in range(12):
            d.update(math.exp(rng.gauss(0.0, 0.05)))
        for k in range(1, 50):
            if d.update(math.exp(rng.gauss(-math.log(shift), 0.05))):
                delays.append(k)
                break
    assert len(delays) == 200
    assert max(delays) <= 3, max(delays)


@pytest.mark.parametrize("shift", [1.5, 2.0])
def test_the_size_of_a_detected_shift_is_the_mean_since_the_change_not_a_lagging_average(shift):
    """At the alarm the detector sizes a x1.5 (or x2) throughput drop from the observations
    since the change (median within 5%), where an EWMA would still read it about a third short."""
    sized, lagging = [], []
    for seed in range(200):
        rng = random.Random(seed)
        d = Detector()
        for _ in range(12):
            d.update(math.exp(rng.gauss(0.0, 0.05)))
        while not d.update(math.exp(rng.gauss(-math.log(shift), 0.05))):
            pass
        sized.append(1.0 / d.level)
        lagging.append(1.0 / math.exp(d.ewma))
    sized.sort()
    lagging.sort()
    assert abs(sized[100] / shift - 1.0) <= 0.05, sized[100]
    assert lagging[100] < 1.0 + 0.8 * (shift - 1.0), lagging[100]  # what the EWMA alone would say
    d = Detector()
    for _ in range(12):
        d.update(1.0)
    assert d.level == pytest.approx(1.0) and d.post_n == 0  # calm: nothing building
