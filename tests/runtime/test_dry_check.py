"""The dry check (``paretrain.runtime.train.dry_check``): a user's workload, loaded from its file
the way a spec names it, tried on a tiny batch; each fault is one line naming the member."""

from __future__ import annotations

import textwrap

import pytest

from paretrain.planner.inputs.space import Config
from paretrain.runtime.train.dry_check import WorkloadError, dry_check
from paretrain.runtime.train.workloads import user_factory

HEADER = """
import torch
from torch import nn
from paretrain.workload import Family, Param, TensorDataset, Workload, WorkloadInfo

class W(Workload):
    info = WorkloadInfo(
        name="tiny",
        families=(Family("mlp", (Param("width", "int", 4, 64, default=8),)),),
        lr=Param("lr", "float", 1e-4, 1e-1, log=True, default=1e-2),
        metrics=(("val_loss", "minimize"), ("val_accuracy", "maximize")),
        target="val_accuracy",
    )
    n = 64
    def _data(self, n):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 6, generator=g)
        return TensorDataset(x, (x[:, 0] > 0).long())
    def train_dataset(self):
        return self._data(self.n)
    def val_dataset(self):
        return self._data(32)
    def build(self, config):
        return nn.Sequential(nn.Linear(6, config.param("width")), nn.ReLU(), nn.Linear(config.param("width"), 2))
"""


def _workload(tmp_path, body: str = "", extra_files: dict[str, str] | None = None):
    for name, text in (extra_files or {}).items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    src = HEADER + textwrap.dedent(body) + "\ndef make_workload():\n    return W()\n"
    path = tmp_path / f"wl_{abs(hash(body)) % 10**8}.py"
    path.write_text(src)
    return user_factory(f"file:{path}:make_workload", "spec.yaml")()


CONFIGS = [
    Config("mlp-8", "mlp", (("width", 8),), lr=0.01),
    Config("mlp-16", "mlp", (("width", 16),), lr=0.01),
]


def test_a_good_workload_passes_and_leaves_torchs_random_state_alone(tmp_path):
    import torch

    wl = _workload(tmp_path)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    dry_check(wl, "tiny", CONFIGS)
    assert torch.equal(before, torch.get_rng_state())


def test_a_workload_file_imports_the_module_beside_it(tmp_path):
    wl = _workload(
        tmp_path,
        """
        from helper_model import width_of
        W.build = lambda self, config: nn.Linear(6, 2) if width_of(config) else None
        """,
        {"helper_model.py": "def width_of(config):\n    return config.param('width')\n"},
    )
    dry_check(wl, "tiny", CONFIGS)


@pytest.mark.parametrize(
    ("body", "member", "said"),
    [
        ("W.n = 0", "train_dataset()", "returned an empty dataset"),
        (
            "def _b(self, config):\n    if config.param('width') == 16:\n        raise ValueError('no 16')\n"
            "    return nn.Linear(6, 2)\nW.build = _b",
            "build('mlp-16')",
            "raised ValueError: no 16",
        ),
        (
            "W.loss = lambda self, model, batch: model(batch[0]).sum() * float('nan')",
            "loss(model 'mlp-8'",
            "nan",
        ),
        ("W.loss = lambda self, model, batch: model(batch[0])", "loss(model 'mlp-8'", "not a scalar"),
        (
            "W.evaluate = lambda self, model, batches: {'val_loss': 1.0}",
            "evaluate(model 'mlp-8'",
            "without ['val_accuracy']",
        ),
        (
            "W.evaluate = lambda self, model, batches: {'val_loss': float('inf'), 'val_accuracy': 0.5}",
            "evaluate(model 'mlp-8'",
            "val_loss=inf",
        ),
        ("W.inputs = lambda self, batch: batch[7]", "inputs(a batch of 4)", "raised IndexError"),
    ],
)
def test_each_fault_is_one_line_naming_the_member_and_what_came_back(tmp_path, body, member, said):
    wl = _workload(tmp_path, body)
    with pytest.raises(WorkloadError) as err:
        dry_check(wl, "tiny", CONFIGS)
    text = str(err.value)
    assert "\n" not in text and member in text and said in text and "To fix:" in text, text
    assert err.value.exit_code == 2


def test_a_member_that_raised_is_placed_at_the_users_line_not_torchs():
    """The innermost frame outside torch and paretrain: an evaluate() that failed in the model's
    forward (called through torch's Module machinery) names the forward's line."""
    import inspect

    import torch

    from paretrain.runtime.train.dry_check import raised

    class Net(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom on the second batch")

    line = inspect.getsourcelines(Net.forward)[1] + 1
    try:
        Net()(torch.zeros(1))  # through torch.nn.Module.__call__
    except RuntimeError as err:
        text = raised(err)
    assert text == f"raised RuntimeError: boom on the second batch (at test_dry_check.py:{line}, in forward)"


def test_a_fault_raised_in_the_standard_library_is_placed_at_the_users_call():
    import inspect
    import json

    from paretrain.runtime.train.dry_check import raised

    def read_labels():
        return json.loads("{not json")

    line = inspect.getsourcelines(read_labels)[1] + 1
    try:
        read_labels()
    except ValueError as err:
        text = raised(err)
    assert text.endswith(f"(at test_dry_check.py:{line}, in read_labels)"), text
