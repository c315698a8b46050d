"""The few-shot setting of benchmarks/fewshot.py, its learn2learn peers and the plain training step.

Each peer is a maker: `make(setting, episodes, dtype)` builds its own conv-4 (seed 0) and returns `run()`,
which computes the summed meta-gradient of the episodes and returns it by parameter name (learn2learn's
Meta-SGD rates under our keys, `algorithm.lr.<name>`), leaving no `.grad` behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.functional import cross_entropy

from metalearn.algorithms.metasgd import rate_key
from metalearn_fewshot.models import conv4, conv4_embedding

Episode = tuple[Tensor, Tensor, Tensor, Tensor]
"""One task: support images, support labels (one shot a class, classes in order), query images, labels."""
Gradient = dict[str, Tensor]
Run = Callable[[], Gradient]


@dataclass(frozen=True)
class Setting:
    ways: int
    queries: int
    tasks: int
    steps: int
    filters: int
    size: int
    channels: int
    lr: float
    device: str

    def classifier(self, dtype: torch.dtype) -> nn.Sequential:
        net = conv4(self.ways, self.channels, self.size, self.filters, torch.Generator().manual_seed(0))
        return net.to(self.device, dtype).train()

    def embedding(self, dtype: torch.dtype) -> nn.Sequential:
        net = conv4_embedding(self.channels, self.filters, torch.Generator().manual_seed(0))
        return net.to(self.device, dtype).train()

    def episodes(self, dtype: torch.dtype) -> list[Episode]:
        """`--tasks` episodes of random images from seed 1 (the same for every dtype but for rounding)."""
        g = torch.Generator().manual_seed(1)
        image = (self.channels, self.size, self.size)
        out = []
        for _ in range(self.tasks):
            xs = torch.randn(self.ways, *image, generator=g).to(self.device, dtype)
            xq = torch.randn(self.ways * self.queries, *image, generator=g).to(self.device, dtype)
            ys = torch.arange(self.ways, device=self.device)
            out.append((xs, ys, xq, ys.repeat_interleave(self.queries)))
        return out


Maker = Callable[[Setting, list[Episode], torch.dtype], Run]


def import_learn2learn() -> Any:
    from metalearn.algorithms.l2l import import_learn2learn as quiet_import

    return quiet_import()


def take_gradients(named: dict[str, nn.Parameter]) -> Gradient:
    """The accumulated `.grad`s by name, cleared for the next meta-iteration."""
    out = {}
    for name, p in named.items():
        assert p.grad is not None, name
        out[name], p.grad = p.grad, None
    return out


def l2l_maml(first_order: bool) -> Maker:
    """learn2learn's `MAML`: per task `clone()`, `adapt` on the support, query loss `backward()`."""

    def make(s: Setting, episodes: list[Episode], dtype: torch.dtype) -> Run:
        model = s.classifier(dtype)
        maml = import_learn2learn().algorithms.MAML(model, lr=s.lr, first_order=first_order)

        def run() -> Gradient:
            for xs, ys, xq, yq in episodes:
                learner = maml.clone()
                for _ in range(s.steps):
                    learner.adapt(cross_entropy(learner(xs), ys))
                cross_entropy(learner(xq), yq).backward()
            return take_gradients(dict(model.named_parameters()))

        return run

    return make


def l2l_anil(s: Setting, episodes: list[Episode], dtype: torch.dtype) -> Run:
    """learn2learn's ANIL recipe: the body's support features once, `MAML` on the head alone."""
    model = s.classifier(dtype)
    body, head = model.get_submodule("features"), model.get_submodule("head")
    head = import_learn2learn().algorithms.MAML(head, lr=s.lr)

    def run() -> Gradient:
        for xs, ys, xq, yq in episodes:
            learner = head.clone()
            features = body(xs)
            for _ in range(s.steps):
                learner.adapt(cross_entropy(learner(features), ys))
            cross_entropy(learner(body(xq)), yq).backward()
        return take_gradients(dict(model.named_parameters()))

    return run


def l2l_metasgd(s: Setting, episodes: list[Episode], dtype: torch.dtype) -> Run:
    """learn2learn's `MetaSGD` (rates start at `lr`), its rates' gradients under our keys."""
    model = s.classifier(dtype)
    meta = import_learn2learn().algorithms.MetaSGD(model, lr=s.lr)
    named = dict(model.named_parameters())
    named.update({rate_key(n): lr for n, lr in zip(list(named), meta.lrs)})

    def run() -> Gradient:
        for xs, ys, xq, yq in episodes:
            learner = meta.clone()
            for _ in range(s.steps):
                learner.adapt(cross_entropy(learner(xs), ys))
            cross_entropy(learner(xq), yq).backward()
        return take_gradients(named)

    return run


def pairwise_distances_logits(a: Tensor, b: Tensor) -> Tensor:
    """learn2learn's examples/vision/protonet_miniimagenet.py, as written."""
    n = a.shape[0]
    m = b.shape[0]
    logits = -((a.unsqueeze(1).expand(n, m, -1) - b.unsqueeze(0).expand(n, m, -1)) ** 2).sum(dim=2)
    return logits


def l2l_protonet(s: Setting, episodes: list[Episode], dtype: torch.dtype) -> Run:
    """learn2learn's ProtoNets example (`fast_adapt`): episodes as its loader gives them (each class's shot
    then its queries, classes in order), sorted by label, embedded at once, support picked by a mask. One
    change: a stable sort (the example's `torch.sort` reorders equal labels past 16 images an episode, so
    another image would be the shot than in ours; the parity check would fail), at the same cost."""
    model = s.embedding(dtype)
    ways, shot, query_num = s.ways, 1, s.queries
    batches = []
    for xs, ys, xq, yq in episodes:
        per_class = [torch.cat([xs[c : c + 1], xq[yq == c]]) for c in range(ways)]
        labels = torch.arange(ways, device=ys.device).repeat_interleave(shot + query_num)
        batches.append((torch.cat(per_class), labels))

    def fast_adapt(data: Tensor, labels: Tensor) -> Tensor:
        sort = torch.sort(labels, stable=True)  # the example's unstable sort may move a class's shot
        data = data[sort.indices]
        labels = labels[sort.indices]
        embeddings = model(data)
        support_indices = np.zeros(data.size(0), dtype=bool)
        selection = np.arange(ways) * (shot + query_num)
        for offset in range(shot):
            support_indices[selection + offset] = True
        query_indices = torch.from_numpy(~support_indices)
        support = embeddings[torch.from_numpy(support_indices)]
        support = support.reshape(ways, shot, -1).mean(dim=1)
        query = embeddings[query_indices]
        labels = labels[query_indices].long()
        logits = pairwise_distances_logits(query, support)
        return cross_entropy(logits, labels)

    def run() -> Gradient:
        for data, labels in batches:
            fast_adapt(data, labels).backward()
        return take_gradients(dict(model.named_parameters()))

    return run


def plain_step(s: Setting, episodes: list[Episode], dtype: torch.dtype) -> Run:
    """The reference: forward and backward of each task's support and query images once, one batch a task."""
    model = s.classifier(dtype)
    batches = [(torch.cat([xs, xq]), torch.cat([ys, yq])) for xs, ys, xq, yq in episodes]

    def run() -> Gradient:
        for x, y in batches:
            cross_entropy(model(x), y).backward()
        return take_gradients(dict(model.named_parameters()))

    return run


L2L_PEERS: dict[str, Maker] = {
    "l2l-maml": l2l_maml(first_order=False),
    "l2l-fomaml": l2l_maml(first_order=True),
    "l2l-anil": l2l_anil,
    "l2l-metasgd": l2l_metasgd,
    "l2l-protonet": l2l_protonet,
}
