"""MetaIQA's bi-level gradient optimisation (Zhu et al., CVPR 2020): first-order, Adam in the inner loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    ScratchCopy,
    as_betas,
    check_inner_steps,
    displacement,
    first_order_adapt,
    model_device,
    named_trainable,
    snapshot_buffers,
    train_steps,
)
from metalearn.algorithms.registry import register_algorithm
from metalearn.task import Task, TaskData

Signal = Literal["query_gradient", "displacement"]


@register_algorithm("metaiqa", "bilevel_adam")
@dataclass(eq=False)
class MetaIQA(MetaAlgorithm):
    """MetaIQA's bi-level gradient optimisation (Zhu et al., CVPR 2020, "MetaIQA: Deep Meta-learning for
    No-Reference Image Quality Assessment", https://arxiv.org/abs/2004.05508): k Adam steps on the support
    set, then k Adam steps on the query set; no second-order terms.

    Arguments:
    - `inner_lr`, `betas`, `weight_decay`: the inner Adam's settings.
    - `inner_steps`: k, the steps on the support set and again on the query set (at least 1).
    - `signal`: the per-task signal handed to the outer step. `"query_gradient"` (default, the paper): the
      mean of the first-order query gradients taken along the k query steps, each at the weights reached so
      far (k = 1 is FOMAML with an Adam inner loop); `"displacement"`: theta minus the weights after both
      phases, a Reptile-like direction (what the authors' public code feeds its outer update).
    - `reset_inner_state`: start each task with a fresh Adam (the paper, default); `False` keeps one inner
      Adam state across tasks, like the authors' code.

    Example:

        metaiqa = MetaIQA(inner_lr=1e-4, inner_steps=6)
        trainer = MetaTrainer(model, algorithm=metaiqa, sampler=sampler)
        trainer.fit(1000)
        adapted = metaiqa.adapt(trainer.model, target_data, mse_loss, steps=50)   # the paper's fine-tuning
    """

    inner_lr: float = 1e-4
    inner_steps: int = 6
    betas: tuple[float, float] = (0.9, 0.99)
    signal: Signal = "query_gradient"
    reset_inner_state: bool = True
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_inner_steps(self.inner_steps, "MetaIQA")
        if self.signal not in ("query_gradient", "displacement"):
            raise ValueError(
                f"unknown MetaIQA signal {self.signal!r}: choose 'query_gradient' or 'displacement'"
            )
        self.betas = as_betas(self.betas)
        self._scratch = ScratchCopy()
        self._optimizer: torch.optim.Optimizer | None = None
        self._pending_state: dict | None = None  # inner Adam state restored from a checkpoint

    @property
    def carries_state_between_tasks(self) -> bool:
        return not self.reset_inner_state  # the one inner Adam state the tasks share

    def _inner_optimizer(self, fast: nn.Module) -> torch.optim.Optimizer:
        params = list(fast.parameters())
        optimizer = self._optimizer
        if (
            self.reset_inner_state
            or optimizer is None
            or optimizer.param_groups[0]["params"][0] is not params[0]
        ):
            optimizer = torch.optim.Adam(
                params, lr=self.inner_lr, betas=self.betas, weight_decay=self.weight_decay
            )
            if self._pending_state is not None:
                optimizer.load_state_dict(self._pending_state)
                self._pending_state = None
            self._optimizer = optimizer
        for group in optimizer.param_groups:  # a decayed inner_lr reaches a kept Adam state too
            group["lr"] = self.inner_lr
        return optimizer

    def passes_per_task(self, batches: int) -> int:
        return 2 * self.inner_steps  # k support steps, then k query steps

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        device = model_device(model)
        fast = self._scratch.load(model)
        opt = self._inner_optimizer(fast)
        train_steps(fast, opt, task.support_batches(device), loss_fn, self.inner_steps)

        query = task.query_batches(device)
        grad_sum: dict[str, Tensor] = {}
        first_loss = float("nan")
        for step in range(self.inner_steps):
            inputs, targets = next(query)
            loss = loss_fn(fast(inputs), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if step == 0:
                first_loss = loss.item()
            if self.signal == "query_gradient":
                for name, p in named_trainable(fast):
                    g = p.grad.detach() if p.grad is not None else torch.zeros_like(p)
                    grad_sum[name] = grad_sum[name] + g if name in grad_sum else g.clone()
            opt.step()

        if self.reset_inner_state:  # its moments are the size of the model: let them go before the next task
            self._optimizer = None
            del opt
        if self.signal == "query_gradient":
            gradient = {name: g.div_(self.inner_steps) for name, g in grad_sum.items()}
        else:
            gradient = displacement(model, fast)
        return MetaResult(gradient=gradient, loss=first_loss, buffers=snapshot_buffers(fast))

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        """Fine-tuning as in the paper: Adam on the target task's training data, same loss."""
        steps = self.inner_steps if steps is None else steps
        return first_order_adapt(model, data, loss_fn, steps, "adam", self.inner_lr, self.betas)

    def state_dict(self) -> dict[str, object]:
        if self.reset_inner_state or self._optimizer is None:
            return {}
        return {"inner_optimizer": self._optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if "inner_optimizer" in state:
            self._pending_state = state["inner_optimizer"]  # type: ignore[assignment]
            self._optimizer = None


BilevelAdam = MetaIQA
