"""Conv-4: the papers' shapes, `features` then `head`, initialisation from the generator given only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metalearn_fewshot.models import conv4, conv4_embedding, feature_size


def first_block(model: nn.Sequential) -> nn.Sequential:
    """The first conv block of a `conv4` model."""
    features = model.features
    assert isinstance(features, nn.Sequential)
    block = features[0]
    assert isinstance(block, nn.Sequential)
    return block


def test_shapes_follow_the_papers() -> None:
    assert conv4_embedding(1, 64)(torch.rand(2, 1, 28, 28)).shape == (2, 64)
    assert conv4_embedding(3, 64)(torch.rand(2, 3, 84, 84)).shape == (2, 1600)  # ProtoNets' mini-ImageNet
    assert conv4(5, 3, 84, hidden=32)(torch.rand(2, 3, 84, 84)).shape == (2, 5)  # MAML's mini-ImageNet
    assert feature_size(32, 64) == 256
    with pytest.raises(ValueError, match="too small"):
        feature_size(8)


def test_blocks_and_children() -> None:
    model = conv4(5)
    assert [name for name, _ in model.named_children()] == ["features", "head"]
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 5
    block = first_block(model)
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    conv, bn, pool = block[0], block[1], block[3]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(pool, nn.MaxPool2d)
    assert conv.kernel_size == (3, 3) and conv.padding == (1, 1) and pool.kernel_size == 2
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 4
    assert bn.running_var is not None and bn.num_batches_tracked is not None  # tracked statistics
    assert torch.equal(bn.weight, torch.ones(64)) and torch.equal(bn.running_var, torch.ones(64))
    assert int(bn.num_batches_tracked) == 0


def test_initialisation_comes_from_the_generator_only() -> None:
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = conv4(5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)  # torch's global stream untouched
    torch.manual_seed(99)
    b = conv4(5, generator=torch.Generator().manual_seed(1))
    c = conv4(5, generator=torch.Generator().manual_seed(2))
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        if name.endswith("weight") and pa.dim() > 1:
            assert not torch.equal(pa, pc), name


def test_weights_follow_pytorch_default_bounds() -> None:
    model = conv4(5, generator=torch.Generator().manual_seed(0))
    first, head = first_block(model)[0], model.head
    assert isinstance(first, nn.Conv2d) and isinstance(head, nn.Linear)
    assert first.weight.abs().max() <= 1 / 3 and first.weight.abs().max() > 0.3  # fan_in 9: bound 1/3
    assert head.weight.abs().max() <= 1 / 8  # fan_in 64
    assert first.weight.std().item() == pytest.approx(
        (1 / 3) / 3**0.5, rel=0.2
    )  # uniform(-b, b): sd b / sqrt(3)


def test_resnet12_embeds_and_classifies() -> None:
    from metalearn_fewshot.models import resnet12

    small = (8, 8, 16, 16)
    embed = resnet12(channels=3, widths=small, generator=torch.Generator().manual_seed(0))
    assert embed(torch.rand(2, 3, 32, 32)).shape == (2, 16)
    model = resnet12(5, 3, small, torch.Generator().manual_seed(0))
    assert [n for n, _ in model.named_children()] == ["features", "head"]
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    again = resnet12(5, 3, small, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 16  # 12 + 4 shortcuts
