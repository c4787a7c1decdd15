"""A Lab with closed-form curves: the planner becomes a pure function tests can check."""

from __future__ import annotations

from collections.abc import Sequence

from paretrain.planner.inputs.space import Config
from paretrain.planner.measure.lab import LocalDevice
from paretrain.planner.measure.profile import ConvergenceRun, NoiseSample, StepProfile, StepSample


class SyntheticLab:
    """Step time ``alpha/threads + beta*b/threads``; samples to a level ``E_min (1 + B/B_noise)``
    with E_min growing with the level; B_noise growing with progress."""

    def __init__(
        self,
        e_min: dict[str, float] | None = None,
        b_noise: float = 200.0,
        best: dict[str, float] | None = None,
        noise_slope: float = 0.75,
        eval_s: float = 0.002,
    ) -> None:
        self.noise_slope = noise_slope
        self.eval_s = eval_s
        self.e_min = e_min or {}
        self.b_noise = b_noise
        self.best = best or {}
        self.calls: list[str] = []
        self.noise_repeats: list[int] = []  # per truncated round: the batch pairs asked for
        self.eval_shares: list[float] = []  # per truncated round: the share of the validation set
        self.truncated: dict[tuple[str, int], tuple[list, list]] = {}

    def devices(self) -> Sequence[LocalDevice]:
        return [LocalDevice("local/cpu-1", "cpu", 1, 1, 16.0), LocalDevice("local/cpu-2", "cpu", 2, 2, 16.0)]

    def fingerprint(self) -> str:
        return "synthetic-1"

    def _alpha_beta(self, config: Config, device: str) -> tuple[float, float]:
        threads = int(device.rsplit("-", 1)[1])
        size = float(config.param("width", config.param("channels", 32)))
        return 1e-3, size * 1e-7 / (0.6 * threads)

    def measure_steps(
        self, config: Config, device: str, precision: str, batch_sizes: Sequence[int], steps: int
    ) -> StepProfile:
        self.calls.append(f"steps {config.id} {device}")
        a, b = self._alpha_beta(config, device)
        samples = tuple(StepSample(bs, 1, a + b * bs, bs / (a + b * bs), 1000 * bs) for bs in batch_sizes)
        return StepProfile(
            device,
            config.id,
            precision,
            samples,
            eval_s=self.eval_s,
            source="measured",
            measured_on="synthetic",
            param_count=10_000,
            ckpt_s=0.01,
        )

    def measure_peak(self, device: str) -> float:
        return 10.0 * int(device.rsplit("-", 1)[1])

    def measure_sync(self, workers: int, nbytes: int) -> tuple[float, float, float]:
        return 1e-4 * (workers - 1) + 2 * (workers - 1) / workers * nbytes / 1e9, 0.0, 1.0

    def measure_convergence(
        self,
        config: Config,
        batch_size: int,
        levels: Sequence[float],
        max_samples: int,
        eval_every: int,
        device: str | None = None,
    ) -> ConvergenceRun:
        self.calls.append(f"convergence {config.id} {batch_size}")
        base = self.e_min.get(config.id, 20000.0)
        best = self.best.get(config.id, 0.95)
        reached = []
        for lv in levels:
            e = base * (1 + 4 * (lv - levels[0])) * (1 + batch_size / self.b_noise)
            reached.append((lv, int(e) if lv <= best and e <= max_samples else None))
        return ConvergenceRun(config.id, batch_size, tuple(reached), best, (), eval_every)

    def value(self, config: Config, batch_size: int, samples: float) -> float:
        """A power-law learning curve rising from 0.1 to the config's best: halfway at a quarter
        of its E_min, slower at larger batches as E(B) says."""
        base = self.e_min.get(config.id, 20000.0) * (1 + batch_size / self.b_noise)
        best = self.best.get(config.id, 0.95)
        return best - (best - 0.1) * (1 + samples / (0.25 * base)) ** -1.0

    def measure_truncated(
        self,
        config: Config,
        batch_size: int,
        levels: Sequence[float],
        evals: Sequence[int],
        noise_at: Sequence[int],
        noise_batches: tuple[int, int],
        device: str | None = None,
        noise_repeats: int = 16,
        eval_share: float = 1.0,
    ) -> tuple[ConvergenceRun, Sequence[NoiseSample]]:
        self.calls.append(f"truncated {config.id} {batch_size} to {max(evals)}")
        self.noise_repeats.append(noise_repeats)
        self.eval_shares.append(eval_share)
        key = (config.id, batch_size)
        curve, noise = self.truncated.setdefault(key, ([], []))
        for s in sorted(e for e in evals if not curve or e > curve[-1][0]):
            curve.append((int(s), round(self.value(config, batch_size, s), 5)))
        for p in noise_at:
            b = self.b_noise * (p / 50_000) ** self.noise_slope
            noise.append(NoiseSample(config.id, int(p), 0.5, 1.0, b, b))
        reached = tuple((lv, next((n for n, v in curve if v >= lv), None)) for lv in levels)
        best = max(v for _, v in curve)
        alpha, beta = self._alpha_beta(config, device or "local/cpu-1")
        step_s = alpha + beta * batch_size
        run = ConvergenceRun(
            config.id,
            batch_size,
            reached,
            best,
            tuple(curve),
            0,
            "fp32",
            seconds=curve[-1][0] / batch_size * step_s,
            device=device or "",
            truncated=True,
        )
        return run, list(noise)

    def measure_noise(
        self, config: Config, progress_samples: Sequence[int], small: int, big: int
    ) -> Sequence[NoiseSample]:
        """B_simple grows along training (as McCandlish et al. observe): x8 over the run."""
        top = max(progress_samples)
        out = []
        for p in progress_samples:
            b = self.b_noise * (p / top) ** self.noise_slope
            out.append(NoiseSample(config.id, p, 0.5, 1.0, b, b))
        return out


class SyntheticTrialLab:
    """Trials with closed-form learning curves: accuracy rises to a ceiling set by the config
    (CNNs best, wider better, lr near 3e-3 best); each evaluation costs a fixed amount."""

    def __init__(self, usd_per_eval: float = 1e-4) -> None:
        self.usd_per_eval = usd_per_eval
        self.spent = 0.0
        self.runs: list[str] = []

    def ceiling(self, c: Config) -> float:
        import math

        fam = {"cnn": 0.95, "gru": 0.9, "mlp": 0.75}[c.family]
        size = c.param("width", c.param("channels", c.param("hidden", 32)))
        lr_pen = abs(math.log10(c.lr / 3e-3)) * 0.1
        return max(0.1, fam - lr_pen - 0.1 / (1 + size / 32))

    def run_trial(self, config, max_samples, eval_every, cap_usd, should_stop, more=None):
        from paretrain.planner.search.search import TrialRun

        self.runs.append(config.id)
        top, curve, stopped, budget_hit = self.ceiling(config), [], False, False
        start, best, cost_best = self.spent, -1.0, 0.0
        cap = start + cap_usd  # the trial's cap counts from its start
        s = eval_every
        while s <= max_samples:
            if self.spent + self.usd_per_eval > cap and more is not None:
                cap += more(self.spent + self.usd_per_eval - cap)
            if self.spent + self.usd_per_eval > cap:
                budget_hit = True
                break
            self.spent += self.usd_per_eval
            acc = round(top - (top - 0.1) * (s / eval_every) ** -0.7, 5)
            curve.append((s, acc))
            if acc > best:
                best, cost_best = acc, self.spent - start
            if should_stop(s, acc, len(curve) - 1):
                stopped = True
                break
            s += eval_every
        if not curve:
            curve = [(0, 0.1)]
        size = config.param("width", config.param("channels", config.param("hidden", 32)))
        return TrialRun(
            tuple(curve),
            cost_best,
            self.usd_per_eval / eval_every,
            self.spent - start,
            latency_ms=0.01 * size,
            params=int(size) * 100,
            peak_mem_bytes=int(size) * 1000,
            stopped=stopped,
            budget_hit=budget_hit,
        )
