"""What every peer shares: the setting, the network, the task stream and the `Peer` contract."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp
from metalearn.task import Task


def mse(pred: Tensor, target: Tensor) -> Tensor:
    return torch.nn.functional.mse_loss(pred.reshape(target.shape), target)


@dataclass
class Setting:
    regime: str
    backbone: str
    crop: int
    tasks: int
    shots: int
    batch: int
    device: str
    inner_lr: float = 1e-3  # SGD: MAML, FOMAML, Reptile
    adam_lr: float = 1e-4  # MetaIQA's inner Adam
    outer_lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)


def build_model(s: Setting) -> nn.Module:
    torch.manual_seed(0)
    if s.regime == "sinusoid":
        return sinusoid_mlp().to(s.device)
    from metalearn_iqa.model.network import IQANet, ModelConfig

    config = ModelConfig(backbone=s.backbone, norm="batch") if s.backbone == "small" else ModelConfig()
    return IQANet(config).to(s.device).train()


def iqa_tasks(s: Setting) -> list[Task]:
    g = torch.Generator().manual_seed(1)

    def batch() -> tuple[Tensor, Tensor]:
        images = torch.rand(s.batch, 3, s.crop, s.crop, generator=g)
        return images.to(s.device), torch.rand(s.batch, generator=g).to(s.device)

    return [
        Task(support=[batch() for _ in range(s.shots)], query=[batch() for _ in range(s.shots)])
        for _ in range(s.tasks)
    ]


class TaskStream:
    """What every peer draws its meta-batches from: fixed IQA tasks, or fresh sinusoid tasks per call."""

    def __init__(self, s: Setting) -> None:
        self.s = s
        self.fixed = iqa_tasks(s) if s.regime == "iqa" else None
        self.sampler = SinusoidSampler(shots=10, query_shots=10)
        self.generator = torch.Generator().manual_seed(2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Task]:
        if self.fixed is not None:
            return self.fixed
        return self.sampler.sample(n, generator or self.generator)


class Peer:
    """One way to run a meta-iteration: `meta_gradient` (the mean over tasks, for the parity check) and
    `iterate` (one full meta-iteration, outer Adam step included)."""

    name = "peer"
    steps_per_task = 0  # forward+backward passes per task, for the matching plain-training limit (e)

    def __init__(self, s: Setting, stream: TaskStream) -> None:
        self.s, self.stream = s, stream
        self.model = build_model(s)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=s.outer_lr)

    def task_gradients(self, tasks: list[Task]) -> None:
        """Accumulate the tasks' meta-gradients (summed) into `.grad`."""
        raise NotImplementedError

    def meta_gradient(self, tasks: list[Task]) -> list[Tensor]:
        self.opt.zero_grad(set_to_none=True)
        self.task_gradients(tasks)
        out = [p.grad.detach().clone() / len(tasks) for p in self.params]  # type: ignore[union-attr]
        self.opt.zero_grad(set_to_none=True)
        return out

    def iterate(self) -> None:
        tasks = self.stream.sample(self.s.tasks)
        self.task_gradients(tasks)
        for p in self.params:
            p.grad.div_(len(tasks))  # type: ignore[union-attr]
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def support_query(task: Task) -> tuple[list, list]:
    as_list = lambda d: [d] if isinstance(d, tuple) else list(d)  # noqa: E731
    return as_list(task.support), as_list(task.query)
