"""QPT as a `MetaAlgorithm`: each "task" is one contrastive batch and its "meta-gradient" the gradient of
the quality-aware loss, so the core `MetaTrainer` steps it with Adam and gives QPT the same progress bar,
metrics log, checkpoints, resume, divergence checks and signal handling as every other prior.

Two forms. In-batch (default): both patches of every degraded image go through the network, each is an
anchor against the other 2M - 1 (`paired_views_loss`). Momentum (`momentum` > 0, MoCo): patch A through
the network, patch B through a momentum copy (no gradient; its weights are an exponential moving average of
the network's), and each query also meets `queue` keys of earlier batches as negatives. The momentum copy
and the queue are the algorithm's state, saved in checkpoints.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    loss_gradients,
    model_device,
    named_trainable,
    preserved_buffers,
    snapshot_buffers,
)
from metalearn.task import Task, TaskData, cycle_batches
from metalearn_iqa.qpt.loss import momentum_loss, paired_views_loss


class QPT(MetaAlgorithm):
    """The quality-aware contrastive loss's gradient on one batch (see the module docstring)."""

    name = "qpt"

    def __init__(
        self, temperature: float = 0.2, momentum: float = 0.0, queue: int = 0, adapt_lr: float = 1e-3
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1) (0: in-batch form), got {momentum}")
        if queue < 0 or (queue and not momentum):
            raise ValueError("a queue (of momentum keys) needs momentum > 0")
        self.temperature = temperature
        self.momentum = momentum
        self.queue_size = queue
        self.adapt_lr = adapt_lr
        self.key_encoder: nn.Module | None = None
        self._pending_key_state: dict[str, Tensor] | None = None
        self.queue: Tensor | None = None

    @property
    def carries_state_between_tasks(self) -> bool:
        return self.momentum > 0  # the momentum encoder and its queue move with every task

    # -- momentum encoder and queue ---------------------------------------------------------------
    def _keys(self, model: nn.Module) -> nn.Module:
        """The momentum copy (made from `model` on first use, or the checkpoint's when resumed), moved
        towards `model` by the EMA rule k <- m k + (1 - m) q."""
        if self.key_encoder is None:
            self.key_encoder = copy.deepcopy(model)
            for p in self.key_encoder.parameters():
                p.requires_grad_(False)
            if self._pending_key_state is not None:  # resumed: the checkpoint's copy, not `model`
                self.key_encoder.load_state_dict(self._pending_key_state)
                self._pending_key_state = None
        with torch.no_grad():
            for k, q in zip(self.key_encoder.parameters(), model.parameters()):
                k.mul_(self.momentum).add_(q.detach(), alpha=1.0 - self.momentum)
        return self.key_encoder

    def _enqueue(self, keys: Tensor) -> None:
        keys = nn.functional.normalize(keys.detach().float(), dim=1)
        queue = keys if self.queue is None else torch.cat([keys, self.queue.to(keys)], dim=0)
        self.queue = queue[: self.queue_size]

    # -- the step --------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, views: Tensor, update: bool = False) -> Tensor:
        """The contrastive loss of `model` on a batch of paired views (rows i and i + M are partners).

        With `update` (a training step), the momentum form also moves its copy and enqueues the keys.
        """
        if not self.momentum:
            return paired_views_loss(model(views), self.temperature)
        m = views.shape[0] // 2
        queries = model(views[:m])
        keys_model = self._keys(model) if update else (self.key_encoder or model)
        with torch.no_grad(), preserved_buffers(keys_model):
            keys = keys_model(views[m:])
        loss = momentum_loss(queries, keys, self.queue, self.temperature)
        if update and self.queue_size:
            self._enqueue(keys)
        return loss

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        device = model_device(model)
        views, _ = next(cycle_batches(task.support, "qpt batch", device))
        params = named_trainable(model)
        with preserved_buffers(model):
            loss = self.loss(model, views, update=True)
            grads = loss_gradients(loss, [p for _, p in params])
            buffers = snapshot_buffers(model)
        return MetaResult(
            gradient={name: g for (name, _), g in zip(params, grads)}, loss=loss.item(), buffers=buffers
        )

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        """A copy of `model` after `steps` (default 1) Adam steps of the in-batch loss on `data`'s batches."""
        adapted = copy.deepcopy(model)
        adapted.train()
        optimizer = torch.optim.Adam(adapted.parameters(), lr=self.adapt_lr)
        batches = cycle_batches(data, "qpt adaptation data", model_device(model))
        for _ in range(1 if steps is None else steps):
            views, _ = next(batches)
            optimizer.zero_grad(set_to_none=True)
            paired_views_loss(adapted(views), self.temperature).backward()
            optimizer.step()
        return adapted

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        state: dict[str, object] = {}
        if self.key_encoder is not None:
            state["key_encoder"] = {k: v.detach().clone() for k, v in self.key_encoder.state_dict().items()}
        elif self._pending_key_state is not None:
            state["key_encoder"] = self._pending_key_state
        if self.queue is not None:
            state["queue"] = self.queue.detach().clone()
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        key_state = state.get("key_encoder")
        if isinstance(key_state, dict):
            if self.key_encoder is not None:
                self.key_encoder.load_state_dict(key_state)
            else:
                self._pending_key_state = key_state
        queue = state.get("queue")
        self.queue = queue if isinstance(queue, Tensor) else None

    def config(self) -> dict[str, object]:
        return {
            "name": self.name,
            "temperature": self.temperature,
            "momentum": self.momentum,
            "queue": self.queue_size,
            "adapt_lr": self.adapt_lr,
        }
