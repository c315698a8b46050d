"""learn2learn-backed algorithms (MAML, Meta-SGD); learn2learn is an optional extra, imported lazily."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    adapted_copy,
    algorithm_key,
    check_inner_steps,
    first_order_adapt,
    loss_gradients,
    model_device,
    named_trainable,
    preserved_buffers,
    snapshot_buffers,
)
from metalearn.algorithms.registry import register_algorithm
from metalearn.task import Task, TaskData, cycle_batches

INSTALL_HINT = (
    "learn2learn is not installed: it is the optional extra 'l2l' "
    "(pip install -r requirements-l2l.txt, which builds learn2learn 0.2.0 with Cython)"
)


def import_learn2learn() -> ModuleType:
    """Import learn2learn quietly (its gym dependency prints a deprecation notice) or explain how to get it."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import learn2learn
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return learn2learn


def _adapt_and_query(learner: Any, task: Task, loss_fn: LossFn, steps: int, device: torch.device) -> Tensor:
    """`steps` learn2learn `adapt` calls on support batches, then the adapted learner's query loss."""
    support = task.support_batches(device)
    for _ in range(steps):
        inputs, targets = next(support)
        learner.adapt(loss_fn(learner(inputs), targets))
    inputs, targets = next(task.query_batches(device))
    return loss_fn(learner(inputs), targets)


@register_algorithm("l2l-maml")
@dataclass(eq=False)
class L2LMAML(MetaAlgorithm):
    """learn2learn's `MAML` wrapper (Finn et al., 2017, https://arxiv.org/abs/1703.03400; learn2learn:
    Arnold et al., 2020, https://arxiv.org/abs/2008.12284): SGD inner loop, second-order unless
    `first_order=True`. Needs the optional extra (`pip install -r requirements-l2l.txt`), imported when
    the algorithm is built.

    Arguments: `inner_lr` and `inner_steps` of the inner SGD (which `adapt` reuses), `first_order`.

    Example:

        maml = L2LMAML(inner_lr=0.01, inner_steps=1)        # or get_algorithm("l2l-maml", ...)
        gradient = maml.meta_gradient(model, task, loss_fn)
    """

    inner_lr: float = 0.01
    inner_steps: int = 1
    first_order: bool = False

    def __post_init__(self) -> None:
        check_inner_steps(self.inner_steps, type(self).__name__)
        self.l2l = import_learn2learn()

    def passes_per_task(self, batches: int) -> int:
        return self.inner_steps + 1  # one support batch per inner step, then one query batch (Meta-SGD too)

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        params = named_trainable(model)
        with preserved_buffers(model):  # learn2learn clones share buffers with the model
            maml = self.l2l.algorithms.MAML(model, lr=self.inner_lr, first_order=self.first_order)
            learner = maml.clone()
            query_loss = _adapt_and_query(learner, task, loss_fn, self.inner_steps, model_device(model))
            grads = loss_gradients(query_loss, [p for _, p in params])
            buffers = snapshot_buffers(learner.module)
        return MetaResult({n: g for (n, _), g in zip(params, grads)}, query_loss.item(), buffers)

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        steps = self.inner_steps if steps is None else steps
        return first_order_adapt(model, data, loss_fn, steps, "sgd", self.inner_lr)


@register_algorithm("l2l-metasgd")
@dataclass(eq=False)
class L2LMetaSGD(L2LMAML):
    """learn2learn's `MetaSGD` (Li et al., 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot
    Learning", https://arxiv.org/abs/1707.09835): MAML with a learned per-parameter inner learning rate.

    The learned rates are this algorithm's extra parameters (`algorithm_key("lrs.<i>")` in meta-gradients);
    they are created for the first model seen and stored in checkpoints through `state_dict`.

    Arguments: as `L2LMAML`'s (`inner_lr` is the rates' initial value).

    Example:

        metasgd = L2LMetaSGD(inner_lr=0.01)
        trainer = MetaTrainer(model, algorithm=metasgd, sampler=sampler)   # the rates train with the model
        adapted = metasgd.adapt(trainer.model, task.support, loss_fn)      # fine-tunes with the learned rates
    """

    creates_parameters_lazily = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._wrapper: Any = None  # learn2learn's MetaSGD (untyped), built for the first model seen
        self._loaded_lrs: nn.ParameterList | None = None  # rates restored before the first model is seen

    def _meta_sgd(self, model: nn.Module) -> Any:
        if self._wrapper is None:
            self._wrapper = self.l2l.algorithms.MetaSGD(
                model, lr=self.inner_lr, first_order=self.first_order, lrs=self._loaded_lrs
            )
            self._loaded_lrs = None
        else:
            self._wrapper.module = model  # same architecture; rates stay learned
        return self._wrapper

    def extra_parameters(self) -> dict[str, nn.Parameter]:
        lrs: Iterable[nn.Parameter] = []
        if self._wrapper is not None:
            lrs = self._wrapper.lrs
        elif self._loaded_lrs is not None:
            lrs = self._loaded_lrs
        return {f"lrs.{i}": p for i, p in enumerate(lrs)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state and not self.extra_parameters():  # read before any meta-step: the rates wait for the model
            values = [torch.as_tensor(state[f"lrs.{i}"]) for i in range(len(state))]
            self._loaded_lrs = nn.ParameterList([nn.Parameter(v.detach().clone()) for v in values])
            return
        super().load_state_dict(state)

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        params = named_trainable(model)
        with preserved_buffers(model):
            wrapper = self._meta_sgd(model)
            learner = wrapper.clone()
            query_loss = _adapt_and_query(learner, task, loss_fn, self.inner_steps, model_device(model))
            extras = self.extra_parameters()
            grads = loss_gradients(query_loss, [p for _, p in params] + list(extras.values()))
            buffers = snapshot_buffers(learner.module)
        gradient = {n: g for (n, _), g in zip(params, grads)}
        gradient.update({algorithm_key(n): g for n, g in zip(extras, grads[len(params) :])})
        return MetaResult(gradient, query_loss.item(), buffers)

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        """Fine-tune a copy with the learned per-parameter rates (plain SGD at `inner_lr` before any training)."""
        steps = self.inner_steps if steps is None else steps
        rates = list(self.extra_parameters().values())
        if not rates:
            return first_order_adapt(model, data, loss_fn, steps, "sgd", self.inner_lr)
        adapted = adapted_copy(model)  # the model's mode kept
        batches = cycle_batches(data, "adaptation data", model_device(model))
        params = list(adapted.parameters())
        for _ in range(steps):
            inputs, targets = next(batches)
            grads = loss_gradients(loss_fn(adapted(inputs), targets), params)
            with torch.no_grad():
                for p, g, lr in zip(params, grads, rates):
                    p.sub_(lr * g)
        return adapted
