"""The `torch.func` MAML backend against the `higher` one: same meta-gradients, buffers and training runs.

The finite-difference, hand-written-FOMAML and learn2learn oracles of test_maml.py run on both backends;
here the backends meet each other on what those oracles do not cover (Adam, BatchNorm, the vmap path).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from metalearn import MetaTrainer, TrainerConfig
from metalearn.algorithms import MAML
from metalearn.algorithms.functional_maml import can_batch
from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp
from metalearn.task import Batch, Task, TaskData
from tests.core.test_maml import make_task, mse, tanh_mlp
from tests.helpers import as_double

CUDA = [pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def both(model: nn.Module, tasks: list[Task], **hyper: object) -> tuple[list, list]:
    """Each backend's results on the same tasks, the global RNG reset alike (dropout draws match)."""
    out = []
    for backend in ("func", "higher"):
        torch.manual_seed(0)
        out.append(list(MAML(backend=backend, **hyper).meta_steps(model, tasks, mse)))  # type: ignore[arg-type]
    return out[0], out[1]


def assert_same(got: list, expected: list, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert list(a.gradient) == list(b.gradient)
        for name in a.gradient:
            torch.testing.assert_close(a.gradient[name], b.gradient[name], rtol=rtol, atol=atol)
        assert a.loss == pytest.approx(b.loss, rel=max(rtol, 1e-9))
        for name in b.buffers:
            torch.testing.assert_close(a.buffers[name], b.buffers[name], rtol=rtol, atol=atol)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_func_matches_higher_task_by_task(optimizer: str, first_order: bool, steps: int) -> None:
    func, high = both(
        tanh_mlp(),
        [make_task(1)],
        inner_lr=0.05,
        inner_steps=steps,
        first_order=first_order,
        inner_optimizer=optimizer,
    )
    assert_same(func, high)


def sinusoid_tasks(n: int, seed: int = 0) -> list[Task]:
    sampler = SinusoidSampler(shots=5, query_shots=7)
    tasks = sampler.sample(n, torch.Generator().manual_seed(seed))
    return [Task(support=as_double(task.support), query=as_double(task.query)) for task in tasks]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_over_tasks_matches_higher(optimizer: str, first_order: bool) -> None:
    model, tasks = sinusoid_mlp(hidden=8).double(), sinusoid_tasks(4)
    assert can_batch(model, tasks)
    func, high = both(
        model, tasks, inner_lr=0.02, inner_steps=2, first_order=first_order, inner_optimizer=optimizer
    )
    assert_same(func, high)


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 1)
    ).double()


def _first(data: TaskData) -> Batch:
    """The first batch of a streamed (list of batches) task set."""
    assert isinstance(data, list)
    return data[0]


def image_task(seed: int, n: int = 4) -> Task:
    g = torch.Generator().manual_seed(seed)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(
            n, 1, generator=g, dtype=torch.float64
        )

    return Task(support=[batch(), batch()], query=[batch()])  # streamed: two support batches


@pytest.mark.parametrize("first_order", [False, True])
def test_batchnorm_gradients_and_buffers_match_higher(first_order: bool) -> None:
    model = bn_net()
    before = {k: b.clone() for k, b in model.named_buffers()}
    tasks = [image_task(1), image_task(2)]
    assert not can_batch(model, tasks)  # training-mode BatchNorm: task by task
    func, high = both(model, tasks, inner_lr=0.1, inner_steps=2, first_order=first_order)
    assert_same(func, high)
    assert not torch.equal(func[0].buffers["1.running_mean"], before["1.running_mean"])  # they did move
    for name, buf in model.named_buffers():  # ...in the copies only
        assert torch.equal(buf, before[name])


def test_frozen_batchnorm_takes_the_vmap_path_and_matches_higher() -> None:
    model = bn_net().eval()
    tasks = [Task(b, b) for b in (_first(image_task(s).support) for s in (1, 2, 3))]
    assert can_batch(model, tasks)
    assert_same(*both(model, tasks, inner_lr=0.1, inner_steps=2))


@pytest.mark.parametrize("device", ["cpu", *CUDA])
def test_meta_trainer_runs_match_across_backends(device: str) -> None:
    """Five outer iterations on the sinusoid: the vmap path (func) and higher reach the same weights."""
    weights = []
    for backend in ("func", "higher"):
        model = sinusoid_mlp(hidden=16).double()
        trainer = MetaTrainer(
            model,
            MAML(inner_lr=0.01, inner_steps=1, backend=backend),
            DoubleSinusoid(shots=5, query_shots=5),
            device=device,
            config=TrainerConfig(tasks_per_batch=4, progress=False, amp=False),
        )
        trainer.fit(5)
        weights.append({k: v.cpu() for k, v in model.state_dict().items()})
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=1e-9, atol=1e-11)


@dataclasses.dataclass(frozen=True)
class DoubleSinusoid(SinusoidSampler):
    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        tasks = super().sample(n, generator)
        return [Task(as_double(x.support), as_double(x.query)) for x in tasks]


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="backend"):
        MAML(backend="jax")


def test_meta_steps_leave_the_model_untouched() -> None:
    model = sinusoid_mlp(hidden=8)
    before = copy.deepcopy(model.state_dict())
    for first_order in (False, True):
        list(
            MAML(first_order=first_order).meta_steps(
                model, SinusoidSampler().sample(3, torch.Generator()), mse
            )
        )
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
    assert all(p.grad is None for p in model.parameters())
