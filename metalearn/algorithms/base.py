"""The contract every meta-learning algorithm meets, and the small pieces they share."""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from metalearn.task import Batch, Task, TaskData, cycle_batches

LossFn = Callable[[Tensor, Tensor], Tensor]
"""`loss_fn(predictions, targets) -> scalar tensor`."""

ALGORITHM_PREFIX = "algorithm."
"""Prefix of an algorithm's own meta-parameters in meta-gradients and the trainer's parameter table."""


def algorithm_key(name: str) -> str:
    """The meta-gradient key of the algorithm's own parameter `name` (e.g. Meta-SGD's `lrs.0`)."""
    return ALGORITHM_PREFIX + name


@dataclass
class MetaResult:
    """What one task contributes to an outer step.

    `gradient` is keyed by parameter name (plus `algorithm_key(name)`, `algorithm.<name>`, for the
    algorithm's own meta-parameters);
    `buffers` holds the adapted copy's buffers (BatchNorm running statistics) so the trainer can carry them;
    `loss` is the query loss observed on the adapted model, for logging.
    """

    gradient: dict[str, Tensor]
    loss: float
    buffers: dict[str, Tensor] = field(default_factory=dict)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-less model)."""
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def named_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Parameters that receive meta-gradients, in registration order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def snapshot_buffers(model: nn.Module) -> dict[str, Tensor]:
    """Detached copies of the model's buffers (BatchNorm running statistics and counters)."""
    return {name: buf.detach().clone() for name, buf in model.named_buffers()}


@contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore the model's buffers on exit: adaptation in train mode must not leak into the meta-model."""
    saved = snapshot_buffers(model)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                buf.copy_(saved[name])


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm layer in evaluation mode (running statistics used, not updated); the rest as is."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


INNER_OPTIMIZERS = ("sgd", "adam")


def check_optimizer_name(name: str) -> None:
    """Reject an inner-optimizer name early, when an algorithm is built, rather than at its first task."""
    if name not in INNER_OPTIMIZERS:
        raise ValueError(f"unknown inner optimizer {name!r}: choose 'sgd' or 'adam'")


def check_inner_steps(steps: int, algorithm: str) -> None:
    """Reject an inner loop of no steps when the algorithm is built."""
    if steps < 1:
        raise ValueError(f"{algorithm} needs inner_steps >= 1, got {steps}")


def as_betas(betas: tuple[float, float] | list[float]) -> tuple[float, float]:
    """Adam's `(beta1, beta2)` from a tuple or from the list a JSON config holds."""
    beta1, beta2 = betas
    return float(beta1), float(beta2)


def make_optimizer(
    name: str,
    params: Iterable[nn.Parameter],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """An inner-loop optimizer by name: `sgd` or `adam` (`betas` are Adam's)."""
    check_optimizer_name(name)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=betas)


def train_steps(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator[Batch], loss_fn: LossFn, steps: int
) -> Tensor:
    """Plain first-order training: `steps` optimizer steps, one batch each; returns the last loss, detached
    (no `.item()` per step: on a GPU each would wait for the device)."""
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        inputs, targets = next(batches)
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.detach()


class ScratchCopy:
    """A reusable working copy of a model, refreshed in place from the meta-model for every task.

    Copying values into an existing copy avoids re-allocating the whole network per task (deepcopy),
    which keeps first-order algorithms' per-task overhead close to that of plain training steps.
    """

    def __init__(self) -> None:
        self._copy: nn.Module | None = None
        self._source_id: int | None = None

    def load(self, model: nn.Module) -> nn.Module:
        if self._copy is None or self._source_id != id(model):
            self._copy = copy.deepcopy(model)
            self._source_id = id(model)
        else:
            with torch.no_grad():  # one fused copy for all parameters and buffers
                torch._foreach_copy_(
                    [*self._copy.parameters(), *self._copy.buffers()], [*model.parameters(), *model.buffers()]
                )
        for dst_module, src_module in zip(
            self._copy.modules(), model.modules()
        ):  # per layer: frozen BatchNorm stays so
            dst_module.training = src_module.training
        for param in self._copy.parameters():
            param.grad = None
        return self._copy


class MetaAlgorithm(ABC):
    """An outer algorithm: turns one task into a meta-gradient for the shared initial parameters.

    A subclass implements `meta_step` and `adapt`, and declares its hyper-parameters as the fields of a
    `@dataclass(eq=False)` so that `config()` lists them; `@register_algorithm("name")` makes it buildable
    by name. Implementations never modify the model passed in (parameters, buffers or `.grad`).
    """

    name: str = "algorithm"
    creates_parameters_lazily: bool = False
    """True when `extra_parameters()` stays empty until the first `meta_step` (e.g. Meta-SGD's rates)."""
    needs_class_labels: ClassVar[bool] = False
    """True when the algorithm applies to classification only (ProtoNets): integer targets, logits out.
    It refuses other targets at its first task; an application that regresses can refuse it up front."""

    @property
    def carries_state_between_tasks(self) -> bool:
        """True when `meta_step` changes state of the algorithm's that the next task sees (MetaIQA's kept
        inner Adam, a momentum queue). The trainer then never abandons a step half-way (it could not put
        that state back); otherwise a stop request may cut a long step short between two tasks."""
        return False

    def meta_gradient(self, model: nn.Module, task: Task, loss_fn: LossFn) -> dict[str, Tensor]:
        """The task's meta-gradient, keyed by parameter name; the model is left unchanged."""
        return self.meta_step(model, task, loss_fn).gradient

    def meta_steps(self, model: nn.Module, tasks: Sequence[Task], loss_fn: LossFn) -> Iterable[MetaResult]:
        """`meta_step` for each task, in order, yielded one at a time so the trainer can sum each result and
        let it go before the next task runs; an algorithm may override it to batch tasks together."""
        for task in tasks:
            yield self.meta_step(model, task, loss_fn)

    def passes_per_task(self, batches: int) -> int:
        """Forward+backward passes of one batch that `meta_step` spends on a task whose support and query
        sets hold `batches` batches each: what equal-compute comparisons count. Optional for a new
        algorithm; the built-in ones declare it, and a test counts their loss evaluations against it."""
        raise NotImplementedError(f"{type(self).__name__} does not declare passes_per_task")

    @abstractmethod
    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        """Meta-gradient plus the adapted copy's buffers and the query loss (what the trainer consumes)."""

    @abstractmethod
    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        """An adapted copy of `model` after `steps` inner steps on `data` (the model itself is untouched)."""

    def extra_parameters(self) -> dict[str, nn.Parameter]:
        """Meta-parameters the algorithm owns besides the model's (e.g. Meta-SGD's learning rates)."""
        return {}

    def state_dict(self) -> dict[str, object]:
        """Algorithm state a checkpoint must hold to resume exactly (default: its extra parameters)."""
        return {name: p.detach().clone() for name, p in self.extra_parameters().items()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        params = self.extra_parameters()
        with torch.no_grad():
            for name, value in state.items():
                if name in params:
                    params[name].copy_(torch.as_tensor(value))

    def config(self) -> dict[str, object]:
        """JSON-serialisable hyper-parameters, stored next to checkpoints: `name` plus every constructor
        field of the algorithm's dataclass (tuples as lists), so `get_algorithm(**config())` rebuilds it."""
        hyper: dict[str, object] = {"name": self.name}
        for name in hyper_parameter_names(type(self)):
            value = getattr(self, name)
            hyper[name] = list(value) if isinstance(value, tuple) else value
        return hyper


def hyper_parameter_names(algorithm: type[MetaAlgorithm]) -> list[str]:
    """The constructor arguments of an algorithm class that `config()` records: its dataclass fields, less
    those marked `metadata={"config": False}` (machinery, not maths); none for a plain class."""
    if not dataclasses.is_dataclass(algorithm):
        return []
    return [
        spec.name for spec in dataclasses.fields(algorithm) if spec.init and spec.metadata.get("config", True)
    ]


def adapted_copy(model: nn.Module) -> nn.Module:
    """The copy `adapt` fine-tunes and returns: a deep copy that keeps the model's mode, layer by layer.

    A model in training mode adapts and predicts with batch statistics (transductive BatchNorm, as MAML's
    reference code), updating the copy's running statistics; in evaluation mode it uses and keeps the running
    statistics. The caller chooses with `model.train()` / `model.eval()` before `adapt`.
    """
    return copy.deepcopy(model)  # deepcopy carries every module's `training` flag


def check_class_labels(targets: Tensor, algorithm: str) -> None:
    """Refuse targets that are not integer class labels (a regression workload) with a one-line error."""
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise ValueError(
            f"{algorithm} needs integer class labels (a classification task), got {targets.dtype} targets"
        )
    if targets.dim() != 1:
        raise ValueError(f"{algorithm} needs class labels of shape [batch], got {list(targets.shape)}")


def first_order_adapt(
    model: nn.Module,
    data: TaskData,
    loss_fn: LossFn,
    steps: int,
    optimizer: str,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
) -> nn.Module:
    """Fine-tune a deep copy of `model` on `data` with a fresh first-order optimizer.

    The copy keeps the model's mode, layer by layer (see `adapted_copy`).
    """
    adapted = adapted_copy(model)
    opt = make_optimizer(optimizer, adapted.parameters(), lr, betas)
    train_steps(adapted, opt, cycle_batches(data, "adaptation data", model_device(model)), loss_fn, steps)
    return adapted


def loss_gradients(loss: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """Gradients of `loss` w.r.t. `params` without touching `.grad` (zeros for unused parameters)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [g.detach() if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]


def displacement(model: nn.Module, adapted: nn.Module) -> dict[str, Tensor]:
    """theta - phi for every trainable parameter: the Reptile direction (a gradient-like quantity)."""
    adapted_params = dict(adapted.named_parameters())
    return {name: (p.detach() - adapted_params[name].detach()) for name, p in named_trainable(model)}
