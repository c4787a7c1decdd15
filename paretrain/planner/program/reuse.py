r"""Starting a run from the profile's checkpoint of its config, so that no work is paid twice.

A truncated profile (``paretrain.planner.measure.budgeted``) trains each config once, at the
smallest convergence batch size, in fp32 on one local device, and keeps the state each run ended
in (``TruncatedCheckpoint``: ``S`` samples trained at global batch ``B0``). A run whose first
stage trains what that run trained may start from it: it loads the checkpoint and goes on from
``S`` samples. For each choice (config c, level a) with such a checkpoint the program gets a
twin, ``Choice(c, a, reused=True)``, that starts there:

    ideal progress reused    P  = integral_0^S ds / (1 + B0 / B(s))   (B: the noise scale along the run)

by the measure the truncated run's levels were fitted with
(``paretrain.planner.measure.truncated.worth``), so that a level past the checkpoint is work still
to do (levels fitted across batch sizes, with ``planner.convergence: full``, count the checkpoint
by the stages' noise model: ``reused_progress``),
    each stage's work        W' = max(E_min - P, 0) / K
    B_noise at stage k       B_noise(P + W' (k + 1/2))

and its stage 0 may only use the option that trained the checkpoint. Its stages, samples,
seconds and dollars then count only what is left, through the one cost model
(``paretrain.planner.program.stagecost``); a replan from the run's progress ``P`` splits the
remaining work into stages the same way (``paretrain.planner.plan.replan``). The program keeps both twins,
so a schedule from scratch on a faster offer and one from the checkpoint can both be on the
front; where the checkpoint's start is no dearer and no slower, it wins.

Rules (each one keeps the start exactly what the profile trained):

- the first stage's config, global batch, precision and offer (the very device: another thread
  count of the same CPU is another device) equal the checkpoint's, the spec's
  ``workload.seed`` is the seed it trained with, and the stage runs on one worker;
- a first stage at another batch size does not reuse the checkpoint: the profile's learning
  curve predicts the rest of *that* run, while a run that changed its batch at once would lean on
  the E(B) model for all of it (the choice from scratch covers such a first stage);
- ``S`` stays below ``target.max_samples`` (a run starting there would stop before it
  evaluates); a checkpoint already past a level (``P >= E_min``) leaves one step per stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from paretrain.planner.measure.measurements import TruncatedCheckpoint
from paretrain.planner.program.problem import Choice, Option

if TYPE_CHECKING:
    from paretrain.planner.inputs.spec import Spec

__all__ = ["NoiseAt", "StartFrom", "matches", "reused_progress", "stage_work", "trains", "with_starts"]


@dataclass(frozen=True, slots=True)
class StartFrom:
    """A candidate's start from the profile's checkpoint: its file (``path``, relative to the
    profile file's folder, and the SHA-256 of its bytes), the ``samples`` it trained and the
    ideal ``progress`` (E_min units) they count for, what it trained, and what the profile paid
    for that training (``trained_usd``, ``TruncatedCheckpoint.trained_usd``; 0 in plans written
    before it was recorded)."""

    path: str
    sha256: str
    samples: int
    progress: float
    config_id: str
    batch_size: int
    precision: str
    hardware: str
    seed: int
    trained_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StartFrom:
        return cls(
            path=str(d["path"]),
            sha256=str(d["sha256"]),
            samples=int(d["samples"]),
            progress=float(d["progress"]),
            config_id=str(d["config_id"]),
            batch_size=int(d["batch_size"]),
            precision=str(d["precision"]),
            hardware=str(d["hardware"]),
            seed=int(d["seed"]),
            trained_usd=float(d.get("trained_usd", 0.0)),
        )


def matches(ck: TruncatedCheckpoint, config_id: str, option: Option, seed: int, max_samples: int) -> bool:
    """Whether a first stage of ``config_id`` under ``option`` trains what ``ck`` trained (the
    module docstring's rules)."""
    return (
        ck.config_id == config_id
        and option.workers == 1
        and option.batch_size == ck.batch_size
        and option.precision == ck.precision
        and option.hardware == ck.device
        and ck.seed == seed
        and 0 < ck.samples < max_samples
    )


def trains(start: StartFrom, option: Option) -> bool:
    """Whether ``option`` is the one that trained the checkpoint ``start`` names."""
    return (option.hardware, option.precision, option.batch_size, option.workers) == (
        start.hardware,
        start.precision,
        start.batch_size,
        1,
    )


def reused_progress(samples: int, batch: int, noise: NoiseAt) -> float:
    """Ideal progress (E_min units) of ``samples`` trained at global batch ``batch``, B_noise read
    at the middle of that progress (a fixed point: a few iterations settle it). For levels fitted
    across batch sizes (``planner.convergence: full``); a truncated run's levels and checkpoint
    are measured alike by ``paretrain.planner.measure.truncated.worth``."""
    p = float(samples)
    for _ in range(8):
        p = samples / (1.0 + batch / noise.at(p / 2.0))
    return p


class NoiseAt(Protocol):
    """B_noise at a point of ideal progress (``paretrain.planner.measure.fits.StageNoise``)."""

    def at(self, progress_samples: float) -> float: ...


def stage_work(e_min: float, stages: int, start: StartFrom | None) -> tuple[float, float]:
    """(ideal progress done before the first stage, each stage's ideal work) of a choice that
    starts at ``start`` (None: from scratch)."""
    done = min(start.progress, e_min) if start is not None else 0.0
    return done, (e_min - done) / stages


def with_starts(
    spec: Spec,
    checkpoints: Sequence[TruncatedCheckpoint],
    levels: Sequence[tuple[str, float]],
    options: Sequence[Option],
    progress_of: Callable[[str, float, int, int], float],
) -> tuple[tuple[Choice, ...], dict[int, StartFrom]]:
    """The program's choices: one per (config, score of a level) of ``levels``, then the twin of
    each one that may start from one of ``checkpoints``; and where each twin starts (by index).
    ``progress_of(config, score, samples, batch)``: the ideal progress of a checkpoint, by the
    measure the level was fitted with."""
    seed, max_samples = spec.workload.seed, spec.target.max_samples
    choices = [Choice(cid, score) for cid, score in levels]
    out, starts = list(choices), {}
    for ch in choices:
        ck = next(
            (k for k in checkpoints if any(matches(k, ch.config_id, o, seed, max_samples) for o in options)),
            None,
        )
        if ck is None:
            continue
        progress = progress_of(ck.config_id, ch.score, ck.samples, ck.batch_size)
        starts[len(out)] = StartFrom(
            ck.path,
            ck.sha256,
            ck.samples,
            float(progress),
            ck.config_id,
            ck.batch_size,
            ck.precision,
            ck.device,
            ck.seed,
            ck.trained_usd,
        )
        out.append(Choice(ch.config_id, ch.score, reused=True))
    return tuple(out), starts
