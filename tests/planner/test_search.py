"""The constrained multi-objective search, on closed-form trials (fast and exact)."""

from __future__ import annotations

import optuna
import pytest

from paretrain.planner.errors import SpecError
from paretrain.planner.inputs.space import Config
from paretrain.planner.inputs.spec_parse import parse_spec
from paretrain.planner.search.search import front_configs, open_study, run_search, search_space
from paretrain.runtime.train.workloads import WORKLOADS
from paretrain.runtime.train.workloads.info import MNIST1D_INFO
from tests.conftest import small_spec
from tests.planner.synthetic_lab import SyntheticTrialLab


def spec(**search):
    s = {"trials": 12, "trial_samples": 10000, "seed": 3, **search}
    return parse_spec(
        small_spec(
            search=s,
            budget={"total_usd": 1.0, "envelopes": {"search": 0.05}},
            runtime={"eval_every_samples": 1000},
        ),
        "spec.yaml",
        WORKLOADS,
    )


def study(name="s", storage=None, sampler="nsga2", seed=3):
    return open_study(storage or optuna.storages.InMemoryStorage(), name, sampler, seed)


def test_space_is_the_workloads_and_the_spec_narrows_it():
    full = search_space(MNIST1D_INFO, {})
    assert [f.name for f in full.families] == ["mlp", "cnn", "gru"]
    narrow = search_space(
        MNIST1D_INFO,
        {"families": ["cnn"], "cnn": {"channels": [8, 16]}, "lr": [1e-3, 1e-2], "optimizer": ["adam"]},
    )
    assert [f.name for f in narrow.families] == ["cnn"]
    assert narrow.families[0].param("channels").high == 16 and narrow.optimizers == ("adam",)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"families": ["transformer"]}, "search.space.families"),
        ({"cnn": {"width": [1, 2]}}, "search.space.cnn.width"),
        ({"lr": [0, 1]}, "search.space.lr"),
        ({"lr": [0.1, 0.01]}, "search.space.lr"),
        ({"colour": 1}, "search.space.colour"),
    ],
)
def test_bad_space_narrowing_is_a_spec_error(bad, field):
    with pytest.raises(SpecError) as info:
        search_space(MNIST1D_INFO, bad)
    assert info.value.field == field


def test_search_finds_the_best_family_and_feeds_its_front():
    lab = SyntheticTrialLab(usd_per_eval=1e-5)
    result = run_search(spec(trials=24, sampler="tpe"), lab, study(sampler="tpe"), MNIST1D_INFO)
    assert result.trials == 24 and result.new_trials == 24
    best_cfg, best = result.front[0]
    assert best_cfg.family == "cnn"
    assert best["score"] >= 0.7  # the closed-form curve tops out near 0.78 in 10 evaluations
    accs = [info["score"] for _, info in result.front]
    assert accs == sorted(accs, reverse=True)


def test_same_seed_and_storage_state_give_the_same_trial_parameters():
    runs = []
    for _ in range(2):
        st = study(seed=11)
        run_search(spec(trials=10, seed=11), SyntheticTrialLab(), st, MNIST1D_INFO)
        runs.append([t.params for t in st.trials])
    assert runs[0] == runs[1]


def test_the_study_stops_before_its_envelope_and_says_what_it_spent():
    lab = SyntheticTrialLab(usd_per_eval=2e-3)  # a full trial costs $0.02 of the $0.05 envelope
    result = run_search(spec(trials=50), lab, study(), MNIST1D_INFO)
    assert lab.spent <= 0.05 + 1e-12
    assert result.stopped_for_budget and result.trials < 50
    assert result.spent_usd == pytest.approx(lab.spent)


def test_running_again_continues_the_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    first = run_search(spec(trials=4), SyntheticTrialLab(), study(storage=storage), MNIST1D_INFO)
    second = run_search(spec(trials=7), SyntheticTrialLab(), study(storage=storage), MNIST1D_INFO)
    assert (first.trials, first.new_trials) == (4, 4)
    assert (second.trials, second.new_trials) == (7, 3)


def test_trials_below_the_median_are_cut_short_and_extrapolated():
    result_study = study()
    run_search(spec(trials=16, fidelity="median"), SyntheticTrialLab(), result_study, MNIST1D_INFO)
    cut = [t for t in result_study.trials if t.user_attrs.get("cut_short")]
    assert cut, "the median rule never fired"
    for t in cut:
        seen = max(a for _, a in t.user_attrs["curve"])
        assert t.user_attrs["extrapolated"] is True
        assert t.values[0] >= seen  # extrapolated to the sample budget, never below what it saw


def test_constraints_keep_violating_configs_off_the_front():
    s = spec(trials=16, max_params=3200)  # params = 100 x width: width <= 32 only
    st = study()
    run_search(s, SyntheticTrialLab(), st, MNIST1D_INFO)
    front = front_configs(st)
    assert front
    for _cfg, info in front:
        assert info["params"] <= 3200
    violators = [t for t in st.trials if t.user_attrs["params"] > 3200]
    assert violators and all(t.constraints["params"] > 0 for t in violators)


class FaultyLab(SyntheticTrialLab):
    """CNNs diverge; GRUs cannot be built; ``raise_on`` (a trial index) raises ``TrialAborted``."""

    def __init__(self, raise_on: int | None = None, unbuildable: tuple[str, ...] = ("gru",)) -> None:
        super().__init__(usd_per_eval=1e-5)
        self.raise_on, self.unbuildable = raise_on, unbuildable

    def run_trial(self, config, max_samples, eval_every, cap_usd, should_stop, more=None):
        from dataclasses import replace

        from paretrain.planner.search.faults import TrialAborted, TrialFault

        if self.raise_on is not None and len(self.runs) == self.raise_on:
            self.runs.append(config.id)
            self.spent += 3e-5
            raise TrialAborted(ValueError("evaluate raised"), 3e-5)
        run = super().run_trial(config, max_samples, eval_every, cap_usd, should_stop, more)
        if config.family == "cnn":
            return replace(run, fault=TrialFault("divergence", "loss nan at step 3"))
        if config.family in self.unbuildable:
            return replace(run, fault=TrialFault("infeasible", f"build({config.id!r}) raised"))
        return run


def test_diverged_and_unbuildable_trials_are_failed_unscored_and_their_spend_counted():
    lab, st = FaultyLab(), study()
    result = run_search(spec(trials=6), lab, st, MNIST1D_INFO)
    failed = st.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert failed and result.trials == 6
    for t in failed:
        kind = "divergence" if t.user_attrs["config"]["family"] == "cnn" else "infeasible"
        assert t.user_attrs[kind] and t.values is None and t.user_attrs["spend_usd"] > 0
    assert {c.family for c, _ in result.front} == {"mlp"}
    assert result.spent_usd == pytest.approx(lab.spent)


class UnfundedLab(SyntheticTrialLab):
    """The third trial finds the envelope spent before its first evaluation."""

    def run_trial(self, config, max_samples, eval_every, cap_usd, should_stop, more=None):
        from dataclasses import replace

        from paretrain.planner.search.faults import UNFUNDED, TrialFault

        run = super().run_trial(config, max_samples, eval_every, cap_usd, should_stop, more)
        if len(self.runs) == 3:
            return replace(
                run,
                curve=(),
                fault=TrialFault(UNFUNDED, "ran out before a first evaluation"),
                budget_hit=True,
            )
        return run


def test_a_trial_the_envelope_could_not_fund_to_an_evaluation_is_failed_and_ends_the_search():
    lab, st = UnfundedLab(usd_per_eval=1e-5), study()
    result = run_search(spec(trials=6), lab, st, MNIST1D_INFO)
    assert result.stopped_for_budget and len(st.trials) == 3
    last = st.trials[-1]
    assert last.state == optuna.trial.TrialState.FAIL and last.values is None
    assert last.user_attrs["unfunded"] == "ran out before a first evaluation"
    assert result.trials == 2  # the two scored trials; the unfunded one is on no front


def test_a_trial_aborted_by_the_workload_is_failed_and_its_cause_raised():
    lab, st = FaultyLab(raise_on=2), study()
    with pytest.raises(ValueError, match="evaluate raised"):
        run_search(spec(trials=6), lab, st, MNIST1D_INFO)
    last = st.trials[-1]
    assert last.state == optuna.trial.TrialState.FAIL and last.user_attrs["error"] == "evaluate raised"
    assert last.user_attrs["spend_usd"] == 3e-5


def test_a_space_where_build_always_raises_stops_after_a_few_trials():
    from paretrain.planner.search.faults import MAX_UNBUILDABLE, UnbuildableSpace

    lab, st = FaultyLab(unbuildable=("mlp", "cnn", "gru")), study()
    with pytest.raises(UnbuildableSpace, match="Hint: build"):
        run_search(spec(trials=6, space={"families": ["mlp", "gru"]}), lab, st, MNIST1D_INFO)
    assert len(st.trials) == MAX_UNBUILDABLE


def test_asha_promotes_by_the_extrapolated_score_at_full_fidelity_and_records_its_rungs():
    from paretrain.planner.search.rungs import ETA, rungs

    assert rungs(90_000, 1000) == [4_000, 12_000, 36_000]  # a factor ETA apart from 4 evaluations in
    assert rungs(40_000, 2000) == [8_000, 24_000]
    assert rungs(4_000, 1000) == []  # a curve cannot be fitted before the budget ends
    result_study = study()
    lab = SyntheticTrialLab(usd_per_eval=1e-5)
    run_search(spec(trials=12, trial_samples=90_000), lab, result_study, MNIST1D_INFO)
    trials = [t for t in result_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    at_first = [t.user_attrs["rung_4000"] for t in trials if "rung_4000" in t.user_attrs]
    assert len(at_first) == len(trials)  # every trial reached the first rung and recorded it
    cut = [t for t in trials if t.user_attrs.get("cut_short")]
    assert cut and len(cut) < len(trials)
    for t in cut:
        # the rung it stopped at: the last it recorded
        rec = t.user_attrs[f"rung_{max(r for r in rungs(90_000, 1000) if f'rung_{r}' in t.user_attrs)}"]
        # stopped because its optimistic extrapolation fell below the top third at that rung
        assert rec["p90"] >= rec["p50"]
        assert t.user_attrs["extrapolated"] is True
        assert t.values[0] >= max(a for _, a in t.user_attrs["curve"])
    # the best config at full fidelity was never cut: a curve headed highest is promoted
    best = max(trials, key=lambda t: lab.ceiling(Config.from_dict(t.user_attrs["config"])))
    assert not best.user_attrs.get("cut_short"), ETA
