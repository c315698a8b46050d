"""Prototypical Networks (Snell et al., 2017): classify by distance to class means of support embeddings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    adapted_copy,
    check_class_labels,
    loss_gradients,
    model_device,
    named_trainable,
    preserved_buffers,
    snapshot_buffers,
)
from metalearn.algorithms.registry import register_algorithm
from metalearn.task import Task, TaskData, concat_data

DISTANCES = ("squared_euclidean", "cosine")


def embed(model: nn.Module, inputs: Tensor) -> Tensor:
    """The model's embeddings of a batch, flattened to [batch, dim]."""
    out = model(inputs)
    if out.dim() < 2:
        raise ValueError(
            f"protonet: the model must map a batch to embeddings [batch, dim], got {list(out.shape)}"
        )
    return out.flatten(1)


def shots_per_class(labels: Tensor) -> Tensor:
    """[N]: how many support examples each class 0..N-1 has (N = the largest label + 1); none is an error."""
    counts = torch.bincount(labels)
    if bool((counts == 0).any()):
        missing = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"protonet: the support set has no example of class {missing} (labels must be 0..N-1)"
        )
    return counts


def class_prototypes(embeddings: Tensor, labels: Tensor) -> Tensor:
    """[N, dim]: the mean embedding of each class 0..N-1."""
    counts = shots_per_class(labels)
    sums = torch.zeros(len(counts), embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    return sums.index_add(0, labels, embeddings) / counts.unsqueeze(1).to(embeddings.dtype)


def prototype_logits(queries: Tensor, prototypes: Tensor, distance: str, scale: float) -> Tensor:
    """[B, N] logits: `scale` times minus the squared Euclidean distance to each prototype, or times the
    cosine similarity. The squared distance is expanded, |q|^2 - 2 q.p + |p|^2, so no [B, N, dim] tensor
    is built (86 MB a copy for 30-way, 15-query training on 1,600-d mini-ImageNet embeddings). That
    expansion cancels digits, so it runs in float32 at least, outside autocast (bf16 keeps 8 bits)."""
    if queries.dtype in (torch.float16, torch.bfloat16) or prototypes.dtype in (
        torch.float16,
        torch.bfloat16,
    ):
        queries, prototypes = queries.float(), prototypes.float()
    with torch.autocast(queries.device.type, enabled=False):
        if distance == "cosine":
            q, p = nn.functional.normalize(queries, dim=1), nn.functional.normalize(prototypes, dim=1)
            return scale * (q @ p.T)
        squared = (
            (queries * queries).sum(1, keepdim=True)
            - 2 * queries @ prototypes.T
            + (prototypes * prototypes).sum(1)
        )
        return -scale * squared


def _support(data: TaskData, device: torch.device) -> tuple[Tensor, Tensor]:
    """Every support batch, concatenated: a prototype is the mean over all of a class's shots."""
    batches = concat_data(data)
    inputs = torch.cat([x for x, _ in batches]) if len(batches) > 1 else batches[0][0]
    labels = torch.cat([y for _, y in batches]) if len(batches) > 1 else batches[0][1]
    return inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)


class PrototypeClassifier(nn.Module):
    """An embedding network and a support set: `forward(x)` gives [B, N] logits over the support's classes.

    The support is embedded together with `x` in one forward pass, as ProtoNets train: in training mode
    BatchNorm normalises with the statistics of the whole episode (transductive); in evaluation mode each
    image is normalised with the running statistics, so the result equals embedding the two apart.
    """

    support_inputs: Tensor
    support_labels: Tensor

    def __init__(
        self, embedding: nn.Module, support: tuple[Tensor, Tensor], distance: str, scale: float
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.register_buffer("support_inputs", support[0])
        self.register_buffer("support_labels", support[1])
        self.distance, self.scale = distance, scale
        self.training = embedding.training  # the embedding's per-layer modes stay as they are

    def forward(self, x: Tensor) -> Tensor:
        shots = len(self.support_labels)
        embeddings = embed(self.embedding, torch.cat([self.support_inputs, x]))
        prototypes = class_prototypes(embeddings[:shots], self.support_labels)
        return prototype_logits(embeddings[shots:], prototypes, self.distance, self.scale)


@register_algorithm("protonet")
@dataclass(eq=False)
class ProtoNet(MetaAlgorithm):
    """Prototypical Networks (Snell, Swersky and Zemel, 2017, "Prototypical Networks for Few-shot Learning",
    https://arxiv.org/abs/1703.05175): the model embeds images; each class's prototype is the mean embedding
    of its support shots; a query's logits are minus its squared Euclidean distances to the prototypes, and
    the meta-gradient is the gradient of `loss_fn(logits, query labels)` (cross-entropy). No inner loop.

    Classification only: targets must be integer labels 0..N-1 (a regression task is refused with a
    `ValueError`), and the model maps inputs to embeddings ([B, dim], or any shape flattened from dim 1).
    Support and query are embedded in one forward pass, as the authors' code does (BatchNorm in training
    mode sees the whole episode). A streamed support set contributes all its batches; one query batch is
    used per task.

    Arguments:
    - `distance`: `"squared_euclidean"` (the paper) or `"cosine"` (the paper's ablation, worse without a
      large `scale`).
    - `scale`: a fixed factor on the logits (1 in the paper; TADAM's metric scaling, Oreshkin et al. 2018).

    `adapt(model, support, loss_fn, steps)` returns a `PrototypeClassifier`: a copy of the model (its mode
    kept) with the support set; `steps` is ignored (there is no inner loop).

    Example:

        protonet = ProtoNet()                              # or get_algorithm("protonet")
        trainer = MetaTrainer(conv4_embedding, algorithm=protonet, sampler=episodes,
                              loss_fn=torch.nn.functional.cross_entropy)
        classifier = protonet.adapt(trainer.model, task.support, cross_entropy)
        accuracy = (classifier(query_x).argmax(1) == query_y).float().mean()
    """

    distance: str = "squared_euclidean"
    scale: float = 1.0

    needs_class_labels = True

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ValueError(
                f"unknown protonet distance {self.distance!r}: choose one of {', '.join(DISTANCES)}"
            )
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"protonet scale must be a positive number, got {self.scale}")

    def passes_per_task(self, batches: int) -> int:
        return batches + 1  # every support batch, then one query batch

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        device = model_device(model)
        support_x, support_y = _support(task.support, device)
        query_x, query_y = next(task.query_batches(device))
        check_class_labels(support_y, "protonet")
        check_class_labels(query_y, "protonet")
        params = named_trainable(model)
        with preserved_buffers(model):  # the forward pass in training mode moves the running statistics
            embeddings = embed(model, torch.cat([support_x, query_x]))
            prototypes = class_prototypes(embeddings[: len(support_y)], support_y)
            logits = prototype_logits(embeddings[len(support_y) :], prototypes, self.distance, self.scale)
            loss = loss_fn(logits, query_y)
            grads = loss_gradients(loss, [p for _, p in params])
            buffers = snapshot_buffers(model)
        return MetaResult({name: g for (name, _), g in zip(params, grads)}, loss.item(), buffers)

    def adapt(
        self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None
    ) -> PrototypeClassifier:
        support = _support(data, model_device(model))
        check_class_labels(support[1], "protonet")
        shots_per_class(support[1])
        return PrototypeClassifier(adapted_copy(model), support, self.distance, self.scale)
