"""MAML's `torch.func` and `higher` backends agree on the IQA network (BatchNorm buffers included)."""

from __future__ import annotations

import torch

from metalearn.task import Task
from metalearn_iqa.model.network import IQANet, ModelConfig
from tests.core.test_functional_maml import assert_same, both


def test_iqa_compact_cnn_matches_higher() -> None:
    """The IQA network (compact backbone with BatchNorm), in float32 (its head runs in float32) on 16-pixel crops."""
    torch.manual_seed(0)
    model = IQANet(ModelConfig(backbone="small", width=4, hidden=8, norm="batch"))
    model = model.train()
    g = torch.Generator().manual_seed(3)
    task = Task(
        support=(torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float32), torch.rand(3, generator=g)),
        query=(torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float32), torch.rand(3, generator=g)),
    )
    assert_same(*both(model, [task], inner_lr=0.01, inner_steps=2), rtol=1e-4, atol=1e-6)
