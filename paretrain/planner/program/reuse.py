r"""Starting a run from the profile's checkpoint of its config, so that no work is paid twice.

A truncated profile (``paretrain.planner.measure.budgeted``) trains each config once, at the
smallest convergence batch size, in fp32 on one local device, and keeps the state each run ended
in (``TruncatedCheckpoint``: ``S`` samples trained). A schedule whose first stage trains what
that run trained starts from it: the run loads the checkpoint and goes on from ``S`` samples.
With B the stage's global batch and ``B_noise(m, 0)`` the choice's noise scale at its first stage
(the one ``paretrain.planner.program.stagecost`` costs the stage at), the first stage needs

    ideal progress reused    P   = S / (1 + B / B_noise(m, 0))
    its work                 W0' = max(E_min / K - P, 0)

so its samples are what is left of the stage (``S0 - S``, whole steps) and its seconds and
dollars follow from the one cost model. The program sees the cheaper first stage, so a schedule
that reuses the profile's training may win because of it.

Rules (each one keeps the start exactly what the profile trained):

- the first stage's config, global batch, precision and offer (the very device: another thread
  count of the same CPU is another device) equal the checkpoint's, the spec's
  ``workload.seed`` is the seed it trained with, and the stage runs on one worker;
- a first stage at another batch size does not reuse the checkpoint (its learning rate,
  optimizer moments and data order belong to the profile's batch);
- ``S`` stays below ``target.max_samples`` (a run starting there would stop before it
  evaluates);
- a checkpoint past the first stage's samples (``S >= S0``) completes that stage (one step is
  left to it); the samples beyond are not credited to the later stages, so the prediction errs
  high by at most them (the run stops at its target when it reaches it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from paretrain.planner.measure.measurements import TruncatedCheckpoint
from paretrain.planner.program.problem import Choice, Option

if TYPE_CHECKING:
    from paretrain.planner.inputs.spec import Spec

__all__ = ["StartFrom", "matches", "start_points"]


@dataclass(frozen=True, slots=True)
class StartFrom:
    """A candidate's start from the profile's checkpoint: its file (``path``, relative to the
    profile file's folder, and the SHA-256 of its bytes), the ``samples`` it trained and the
    ideal ``progress`` (E_min units) they count for, and what it trained."""

    path: str
    sha256: str
    samples: int
    progress: float
    config_id: str
    batch_size: int
    precision: str
    hardware: str
    seed: int

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


def start_points(
    spec: Spec,
    checkpoints: Sequence[TruncatedCheckpoint],
    choices: Sequence[Choice],
    options: Sequence[Option],
    b_noise_stage: Mapping[tuple[int, int], float],
) -> dict[tuple[int, int], StartFrom]:
    """(choice m, option o) -> where a first stage of m under o starts, for every pair that
    may start from one of ``checkpoints``."""
    seed, max_samples = spec.workload.seed, spec.target.max_samples
    out: dict[tuple[int, int], StartFrom] = {}
    for m, ch in enumerate(choices):
        for ck in checkpoints:
            for o, opt in enumerate(options):
                if not matches(ck, ch.config_id, opt, seed, max_samples):
                    continue
                progress = ck.samples / (1.0 + opt.global_batch / b_noise_stage[(m, 0)])
                out[(m, o)] = StartFrom(
                    ck.path,
                    ck.sha256,
                    ck.samples,
                    float(progress),
                    ck.config_id,
                    ck.batch_size,
                    ck.precision,
                    ck.device,
                    ck.seed,
                )
    return out
