"""Meta-SGD (Li et al., 2017): MAML whose inner learning rate is a learned tensor, one rate per weight."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metalearn.algorithms import functional_maml
from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    adapted_copy,
    algorithm_key,
    check_inner_steps,
    loss_gradients,
    model_device,
    named_trainable,
)
from metalearn.algorithms.registry import register_algorithm
from metalearn.task import Task, TaskData, cycle_batches

RATE_PREFIX = "lr."
"""A rate's name among the algorithm's parameters: `lr.<model parameter name>` (`algorithm.lr.<...>` in
meta-gradients and in the trainer's parameter table)."""


def rate_key(name: str) -> str:
    """The meta-gradient key of the rate of model parameter `name`."""
    return algorithm_key(RATE_PREFIX + name)


@register_algorithm("metasgd")
@dataclass(eq=False)
class MetaSGD(MetaAlgorithm):
    """Meta-SGD (Li, Zhou, Chen and Li, 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning",
    https://arxiv.org/abs/1707.09835): MAML's inner SGD step `phi = theta - alpha * grad` with `alpha` a
    learned tensor of the parameter's shape, meta-learned by the outer optimizer together with `theta`.

    The rates are this algorithm's own meta-parameters (`extra_parameters()`, named `lr.<parameter name>`,
    their meta-gradients keyed `algorithm.lr.<parameter name>`). They are created for the first model seen
    (`creates_parameters_lazily`), on its device and dtype, and saved and restored with a run's checkpoint.
    The meta-gradients come from `torch.func` (MAML's machinery): `vmap` over the meta-batch where the tasks
    allow it, else task by task with `functional_call`.

    Arguments:
    - `inner_lr`: every rate's initial value.
    - `inner_steps`: inner SGD steps per task, one support batch each (at least 1).
    - `first_order`: drop the second-order terms (the inner gradients are constants); the rates still get
      their gradient, -(query gradient at phi) * (sum of the inner gradients).

    Example:

        metasgd = MetaSGD(inner_lr=0.01)                 # or get_algorithm("metasgd", inner_lr=0.01)
        trainer = MetaTrainer(model, algorithm=metasgd, sampler=sampler)   # the rates train with the model
        adapted = metasgd.adapt(trainer.model, task.support, loss_fn)      # SGD with the learned rates
    """

    inner_lr: float = 0.01
    inner_steps: int = 1
    first_order: bool = False

    creates_parameters_lazily = True

    def __post_init__(self) -> None:
        check_inner_steps(self.inner_steps, "MetaSGD")
        self._rates: dict[str, nn.Parameter] = {}  # model parameter name -> its rates

    # -- the rates -----------------------------------------------------------------------------------
    def extra_parameters(self) -> dict[str, nn.Parameter]:
        return {RATE_PREFIX + name: rate for name, rate in self._rates.items()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if self._rates:
            super().load_state_dict(state)
            return
        for key, value in state.items():  # read before any task: the rates are made from the checkpoint
            if not key.startswith(RATE_PREFIX):
                raise ValueError(f"metasgd: unexpected entry {key!r} in its saved state")
            tensor = torch.as_tensor(value).detach().clone()
            self._rates[key.removeprefix(RATE_PREFIX)] = nn.Parameter(tensor)

    def rates(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The rates for `model`'s trainable parameters: made at `inner_lr` for the first model seen, and
        checked against every later one (same parameter names and shapes)."""
        trainable = named_trainable(model)
        if not self._rates:
            self._rates = {n: nn.Parameter(torch.full_like(p.detach(), self.inner_lr)) for n, p in trainable}
        elif len(trainable) != len(self._rates) or any(
            n not in self._rates or self._rates[n].shape != p.shape for n, p in trainable
        ):
            raise ValueError(
                "metasgd: its learned rates belong to a model with other parameters "
                f"({len(self._rates)} tensors); build a new MetaSGD for this model"
            )
        return self._rates

    # -- meta-gradients ------------------------------------------------------------------------------
    def _inner_loop(self) -> functional_maml.InnerLoop:
        return functional_maml.InnerLoop(self.inner_lr, self.inner_steps, first_order=self.first_order)

    def passes_per_task(self, batches: int) -> int:
        return self.inner_steps + 1  # one support batch per inner step, then one query batch

    def meta_steps(self, model: nn.Module, tasks: Sequence[Task], loss_fn: LossFn) -> Iterable[MetaResult]:
        if functional_maml.can_batch(model, tasks):
            rates: dict[str, Tensor] = dict(self.rates(model))
            return functional_maml.batched_meta_steps(
                model, tasks, loss_fn, self._inner_loop(), rates=rates, rate_key=rate_key
            )
        return super().meta_steps(model, tasks, loss_fn)

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        rates: dict[str, Tensor] = dict(self.rates(model))
        return functional_maml.task_meta_step(
            model, task, loss_fn, self._inner_loop(), rates=rates, rate_key=rate_key
        )

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        """`steps` SGD steps on a copy of `model` (its mode kept), each weight at its learned rate (at
        `inner_lr` before the rates exist)."""
        steps = self.inner_steps if steps is None else steps
        adapted = adapted_copy(model)
        trainable = named_trainable(adapted)
        params: list[Tensor] = [p for _, p in trainable]
        rates: list[Tensor] | None = (
            [self.rates(model)[n].detach() for n, _ in trainable] if self._rates else None
        )
        batches = cycle_batches(data, "adaptation data", model_device(model))
        for _ in range(steps):
            inputs, targets = next(batches)
            grads = loss_gradients(loss_fn(adapted(inputs), targets), params)
            with torch.no_grad():
                if rates is None:
                    torch._foreach_add_(params, grads, alpha=-self.inner_lr)
                else:
                    torch._foreach_addcmul_(params, grads, rates, value=-1)
        return adapted
