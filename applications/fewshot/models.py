"""Few-shot backbones: the conv-4 of MAML and ProtoNets, seeded by an explicit generator.

`conv4(...)` has two children, `features` (the four blocks, flattened) then `head` (a linear layer to
`ways` logits) for gradient-based methods (MAML, ANIL adapts only `head`); `conv4_embedding(...)` is the
`features` part alone, a flat embedding for ProtoNets; `resnet12(...)` the ResNet-12 of TADAM and
MetaOptNet (optional, for mini-ImageNet-sized inputs). Each block is a 3x3 convolution (padding 1),
BatchNorm, ReLU and a 2x2 max-pool: 28x28 inputs give 1x1 maps (64 features with 64 filters), 84x84
inputs 5x5 maps (1,600 features, the ProtoNets embedding on mini-ImageNet).

Initialisation draws only from the `generator` given (PyTorch's default rules: Kaiming-uniform weights
with a = sqrt(5), biases uniform in +-1/sqrt(fan_in); BatchNorm weight 1, bias 0), never from torch's
global random state: the same generator state gives the same network.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, BatchNorm, ReLU, 2x2 max-pool."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, device="meta"),
        nn.BatchNorm2d(out_channels, device="meta"),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def feature_size(image_size: int, hidden: int = 64, blocks: int = 4) -> int:
    """Length of the flat embedding for square `image_size` inputs (each pool halves, rounding down)."""
    side = image_size
    for _ in range(blocks):
        side //= 2
    if side < 1:
        raise ValueError(f"{image_size}x{image_size} images are too small for {blocks} 2x2 pools")
    return hidden * side * side


def conv4_embedding(
    channels: int = 1, hidden: int = 64, generator: torch.Generator | None = None
) -> nn.Sequential:
    """The four conv blocks then a flatten: images `[B, channels, H, W]` to embeddings `[B, D]`."""
    if channels < 1 or hidden < 1:
        raise ValueError(f"channels and hidden must be positive, got {channels} and {hidden}")
    blocks = [conv_block(channels, hidden)] + [conv_block(hidden, hidden) for _ in range(3)]
    embedding = nn.Sequential(*blocks, nn.Flatten())
    _initialise(embedding, generator)
    return embedding


def conv4(
    ways: int,
    channels: int = 1,
    image_size: int = 28,
    hidden: int = 64,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """`features` (the conv-4 embedding) then `head` (linear, `ways` logits): for MAML-style methods."""
    if ways < 2:
        raise ValueError(f"ways must be at least 2, got {ways}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    features = conv4_embedding(channels, hidden, generator)
    head = nn.Linear(feature_size(image_size, hidden), ways, device="meta")
    _initialise(head, generator)
    return nn.Sequential(OrderedDict(features=features, head=head))


class ResidualBlock(nn.Module):
    """ResNet-12's block: three 3x3 conv + BatchNorm (LeakyReLU 0.1 between), a 1x1 conv + BatchNorm
    shortcut, LeakyReLU, then a 2x2 max-pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [
                nn.Conv2d(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    3,
                    padding=1,
                    bias=False,
                    device="meta",
                ),
                nn.BatchNorm2d(out_channels, device="meta"),
            ]
            if i < 2:
                layers.append(nn.LeakyReLU(0.1))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False, device="meta"),
            nn.BatchNorm2d(out_channels, device="meta"),
        )
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.shortcut(x))


RESNET12_WIDTHS = (64, 160, 320, 640)


def resnet12(
    ways: int | None = None,
    channels: int = 3,
    widths: tuple[int, int, int, int] = RESNET12_WIDTHS,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """ResNet-12 (Oreshkin et al. 2018; Lee et al. 2019, without DropBlock): four residual blocks of
    `widths` channels, global average pooling to a `widths[-1]` embedding. `ways=None`: the embedding alone
    (ProtoNets); else `features` then a linear `head`. Initialised from `generator` like `conv4`."""
    blocks = [ResidualBlock(a, b) for a, b in zip((channels, *widths[:-1]), widths)]
    features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    _initialise(features, generator)
    if ways is None:
        return features
    head = nn.Linear(widths[-1], ways, device="meta")
    _initialise(head, generator)
    return nn.Sequential(OrderedDict(features=features, head=head))


def _initialise(module: nn.Module, generator: torch.Generator | None) -> None:
    """Materialise, in place, a module built on the meta device and initialise it from `generator`
    (default: seed 0)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    module.to_empty(device="cpu")
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            fan_in = layer.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) reduces to this bound
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=generator)
                if layer.bias is not None:
                    layer.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(layer, nn.BatchNorm2d):
            layer.reset_parameters()  # weight 1, bias 0, running mean 0, variance 1, counter 0
