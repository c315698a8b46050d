"""The quality-aware contrastive loss (InfoNCE): two patches of one degraded image are positives; every
other patch is a negative, the same source under other degradations (the hard, quality-only negatives)
as well as other images.

Embeddings are L2-normalised and compared by cosine similarity over a `temperature`; the loss runs in
float32 (also under autocast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(
    anchors: Tensor,
    candidates: Tensor,
    positive: Tensor,
    temperature: float,
    exclude: Tensor | None = None,
) -> Tensor:
    """Mean over anchors of -log softmax(sim / temperature)[positive], over the candidates not excluded.

    `anchors` (N, D), `candidates` (M, D), `positive` (N,) the index of each anchor's positive candidate,
    `exclude` (N, M) True where a candidate is left out of an anchor's softmax (e.g. the anchor itself).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    a = F.normalize(anchors.float(), dim=1)
    c = F.normalize(candidates.float(), dim=1)
    logits = a @ c.T / temperature
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    return F.cross_entropy(logits, positive)


def paired_views_loss(embeddings: Tensor, temperature: float = 0.2) -> Tensor:
    """In-batch loss over 2M embeddings: rows i and i + M are the two patches of degraded image i.

    Each patch is an anchor; its positive is its partner, its negatives the other 2M - 2 patches.
    """
    n = embeddings.shape[0]
    if n % 2 or n < 4:
        raise ValueError(f"need an even number of at least 4 embeddings (two views per image), got {n}")
    m = n // 2
    index = torch.arange(n, device=embeddings.device)
    positive = (index + m) % n
    exclude = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    return info_nce(embeddings, embeddings, positive, temperature, exclude)


def momentum_loss(queries: Tensor, keys: Tensor, queue: Tensor | None, temperature: float = 0.2) -> Tensor:
    """MoCo form: query i (patch A of degraded image i) against the keys of every patch B in the batch
    (its positive is key i; the others, same source under other degradations included, are negatives)
    and the queued keys of earlier batches (more negatives)."""
    candidates = keys if queue is None or len(queue) == 0 else torch.cat([keys, queue.to(keys)], dim=0)
    positive = torch.arange(queries.shape[0], device=queries.device)
    return info_nce(queries, candidates, positive, temperature)
