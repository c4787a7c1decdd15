"""The training processes of a run: one trainer, on as many processes as its stage runs on.

A stage with ``workers: n`` on a local offer runs data parallel on ``n`` processes
(``paretrain.runtime.train.parallel``: the run's process is rank 0, torch's elastic launcher runs the
others); on an emulated offer it runs in one process on ``emulate_on``, whose virtual clock
charges the workers' time. The run hosts one rendezvous (``paretrain.runtime.train.elastic``) for all its
multi-process stages, so other machines' ``paretrain worker`` serve every one of them.
"""

from __future__ import annotations

from typing import Any

import torch

from paretrain.planner.inputs.space import Config
from paretrain.planner.plan.plan import StagePlan
from paretrain.runtime.run.state import RunSetup
from paretrain.runtime.train.devices import claim
from paretrain.runtime.train.trainer import Trainer
from paretrain.runtime.workspace import Workspace

__all__ = ["TrainerGroup"]


class TrainerGroup:
    """Owns the run's trainer: builds it for a stage, regroups it when the worker count changes."""

    def __init__(self, setup: RunSetup, workload: Any, config: Config) -> None:
        self.setup, self.workload, self.config = setup, workload, config
        self.trainer: Any = None
        self.rendezvous: Any = None

    def device(self, hardware: str) -> str:
        """Claim the local device a stage on ``hardware`` trains on."""
        return claim(self.setup.emulate_on if self.setup.emulated(hardware) else hardware)

    def processes(self, st: StagePlan) -> int:
        return 1 if self.setup.emulated(st.hardware) else max(1, st.workers)

    def start(self, st: StagePlan) -> Any:
        self.trainer = self._make(st)
        return self.trainer

    def _make(self, st: StagePlan) -> Any:
        device = self.device(st.hardware)
        n = self.processes(st)
        seed = self.setup.spec.workload.seed
        metric = self.setup.spec.target.metric_obj
        if n > 1:
            from paretrain.runtime.train.elastic import Rendezvous, Settings
            from paretrain.runtime.train.parallel import ParallelTrainer

            if self.rendezvous is None:
                self.rendezvous = Rendezvous(Settings.from_env(), run_id=self.setup.run_id)
            return ParallelTrainer(
                self.workload,
                self.config,
                workers=n,
                threads=torch.get_num_threads(),
                batch_size=st.batch_size * st.workers,
                precision=st.precision,
                seed=seed,
                metric=metric,
                source=self.setup.spec.workload,
                rendezvous=self.rendezvous,
                cache_dir=Workspace(self.setup.run_dir.parents[2]).cache,  # .paretrain/runs/ID
            )
        return Trainer(
            self.workload,
            self.config,
            batch_size=st.batch_size * st.workers,
            precision=st.precision,
            device=device,
            seed=seed,
            metric=metric,
            loader_workers=self.setup.spec.runtime.loader_workers,
        )

    def regroup(self, st: StagePlan) -> bool:
        """Move the training state onto as many processes as ``st`` runs on, if that changed."""
        if self.processes(st) == getattr(self.trainer, "world", 1):
            return False
        state = self.trainer.state_dict()
        self._close_trainer()
        self.trainer = self._make(st)
        self.trainer.load_state_dict(state)
        return True

    def pending_connect_s(self) -> float:
        """The longest the next step may wait for its processes to rendezvous."""
        return float(getattr(self.trainer, "pending_connect_s", 0.0))

    def _close_trainer(self) -> None:
        close = getattr(self.trainer, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        self._close_trainer()
        if self.rendezvous is not None:
            self.rendezvous.close()
            self.rendezvous = None
