"""The truncated profile (``paretrain.planner.measure.budgeted``): one partial run per config,
held to ``planner.profile_fraction`` of the job it estimates, its levels extrapolated."""

from __future__ import annotations

import functools
import json

import pytest

from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.measure.budgeted import (
    EVAL_SHARE,
    EVALS,
    MIN_NOISE_REPEATS,
    MIN_ROUND_EVALS,
    MIN_ROUNDS,
    NOISE_REPEATS,
    NOISE_SHARE,
    eval_share,
    noise_repeats,
    round_evals,
)
from paretrain.planner.measure.profile import build_profile
from paretrain.planner.measure.profile_file import profile_from_json, profile_to_json
from paretrain.runtime.train.workloads import WORKLOADS
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticLab
from tests.planner.test_plan import plan_text


def _spec(fraction: float = 0.1, **over):
    planner = {**small_spec()["planner"], "convergence": "truncated", "profile_fraction": fraction}
    data = small_spec(
        planner=planner,
        target={"goal": 0.8, "levels": [0.8, 0.9], "max_samples": 4_000_000},
        **over,
    )
    return data


@functools.cache
def _profile(fraction: float = 0.1):
    """The profile of the two-config spec at ``fraction`` (each built once: the fits take seconds)."""
    spec = parse_spec(_spec(fraction), "spec.yaml", WORKLOADS)
    lab = SyntheticLab(e_min={"mlp-64x2": 300000, "cnn-8x2": 120000})
    return build_profile(spec, lab, list(spec.configs)), lab


def test_each_config_trains_once_at_one_batch_size_with_noise_along_the_same_run():
    profile, lab = _profile()
    assert not any(c.startswith("convergence ") for c in lab.calls)  # no run per batch size
    assert {r.config_id for r in profile.convergence} == {"mlp-64x2", "cnn-8x2"}
    assert all(r.truncated and r.batch_size == 16 for r in profile.convergence)
    assert len(profile.convergence) == 2
    for cfg in ("mlp-64x2", "cnn-8x2"):
        run = next(r for r in profile.convergence if r.config_id == cfg)
        assert len(profile.noise_for(cfg)) >= 1
        assert all(n.progress_samples <= run.curve[-1][0] for n in profile.noise_for(cfg))
    # the profile file keeps the truncated runs and the account of their budget
    again = profile_from_json(profile_to_json(profile), "p.json")
    assert again.convergence == profile.convergence
    notes = again.notes["truncated"]
    assert notes["profile_fraction"] == 0.1 and notes["job_estimate_s"] > 0


def test_a_round_starts_only_when_it_fits_the_fraction_of_the_job_estimate():
    for fraction in (0.02, 0.1, 0.5):
        notes = _profile(fraction)[0].notes["truncated"]
        assert notes["rounds"] == len(notes["history"]) + 1
        for i, (spent, nxt, budget, floor) in enumerate(notes["history"]):
            assert floor or spent + nxt <= budget * (1 + 1e-6), notes  # budget None: floor
            # a round runs past the fraction only among the first ones or while no curve predicts
            assert not floor or i + 1 < MIN_ROUNDS or budget is None, notes


def test_a_larger_fraction_buys_longer_runs():
    short = _profile(0.02)[0]
    long = _profile(0.5)[0]
    assert max(r.curve[-1][0] for r in long.convergence) > max(r.curve[-1][0] for r in short.convergence)


def test_a_plan_from_truncated_runs_marks_each_extrapolated_level():
    plan = json.loads(plan_text(_spec(), SyntheticLab(e_min={"mlp-64x2": 30000, "cnn-8x2": 12000})))
    notes = " ".join(plan["notes"])
    assert "extrapolated from a truncated run" in notes
    assert plan["pareto"], "a plan from truncated runs still offers schedules"


def test_a_round_evaluates_less_when_its_evaluations_would_outweigh_its_training():
    assert round_evals(train_s=100.0, eval_s=0.1) == EVALS  # cheap evaluations: all of them
    assert round_evals(train_s=1.0, eval_s=0.5) == MIN_ROUND_EVALS  # dear ones: the fewest
    n = round_evals(train_s=10.0, eval_s=0.5)  # between: their share of the round's training
    assert MIN_ROUND_EVALS < n < EVALS and n * 0.5 <= EVAL_SHARE * 10.0
    assert round_evals(train_s=float("inf"), eval_s=0.5) == EVALS  # no step time measured yet
    assert round_evals(train_s=10.0, eval_s=0.0) == EVALS


def test_a_round_whose_fewest_evaluations_outweigh_its_training_reads_a_part_of_the_set():
    assert eval_share(train_s=100.0, eval_s=0.1, evals=EVALS) == 1.0  # cheap: the whole set
    share = eval_share(train_s=1.0, eval_s=0.5, evals=MIN_ROUND_EVALS)
    assert share * MIN_ROUND_EVALS * 0.5 == pytest.approx(EVAL_SHARE * 1.0)  # sized to fit
    assert eval_share(train_s=float("inf"), eval_s=0.5, evals=2) == 1.0  # no step time yet
    assert eval_share(train_s=10.0, eval_s=0.0, evals=2) == 1.0
    # along a profile whose evaluations are dear, the first rounds read parts, growing with them
    cheap = SyntheticLab(e_min={"mlp-64x2": 300000, "cnn-8x2": 120000})
    dear = SyntheticLab(e_min={"mlp-64x2": 300000, "cnn-8x2": 120000}, eval_s=0.5)
    spec = parse_spec(_spec(), "spec.yaml", WORKLOADS)
    for lab in (cheap, dear):
        build_profile(spec, lab, list(spec.configs))
    assert set(cheap.eval_shares) == {1.0}
    assert dear.eval_shares[0] < 1.0
    for cfg in ("mlp-64x2", "cnn-8x2"):
        mine = [
            s
            for c, s in zip(
                [c.split()[1] for c in dear.calls if c.startswith("truncated ")],
                dear.eval_shares,
                strict=True,
            )
            if c == cfg
        ]
        assert mine == sorted(mine)


def test_a_noise_sample_averages_fewer_pairs_in_short_rounds():
    pair = (16, 512)
    assert noise_repeats(1000, pair) == MIN_NOISE_REPEATS
    assert noise_repeats(10_000_000, pair) == NOISE_REPEATS
    mid = noise_repeats(20_000, pair)
    assert MIN_NOISE_REPEATS < mid < NOISE_REPEATS and mid * sum(pair) <= NOISE_SHARE * 20_000
    # along a profile the rounds double, so the pairs asked for never decrease
    _, lab = _profile()
    assert lab.noise_repeats and lab.noise_repeats == sorted(lab.noise_repeats)
    assert all(MIN_NOISE_REPEATS <= r <= NOISE_REPEATS for r in lab.noise_repeats)


def test_a_run_that_reached_the_top_level_goes_on_until_it_has_a_learning_curve():
    """Under load a first round evaluates fewer times; a run that reached the top level in three
    evaluations is not done, since the plan is made from its learning curve."""
    from paretrain.planner.measure.budgeted import _done, _Run
    from paretrain.planner.measure.measurements import ConvergenceRun

    spec = parse_spec(_spec(), "spec.yaml", WORKLOADS)
    cfg = spec.configs[0]

    def run(curve):
        reached = tuple((lv, next((n for n, v in curve if v >= lv), None)) for lv in (0.8, 0.9))
        r = _Run(cfg, "local/cpu-1", samples=curve[-1][0])
        r.run = ConvergenceRun(cfg.id, 16, reached, max(v for _, v in curve), tuple(curve), truncated=True)
        return r

    assert _done(run([(256, 0.77), (512, 0.90), (768, 0.94)]), spec, 4_000_000) == ""
    six = [(128, 0.72), (256, 0.77), (384, 0.85), (512, 0.90), (640, 0.91), (768, 0.94)]
    assert _done(run(six), spec, 4_000_000) == "the top level known"
