"""The MetaIQA regression network: convolutional features, global average pooling, a fully connected head.

Two backbones are offered. ``"resnet18"`` is the paper's (the convolutional layers of ResNet18, ImageNet
weights available) and the default for the real databases. ``"small"`` is a compact CNN (about 0.5 M
parameters) that learns image quality from scratch in CPU minutes; the demo, the tests and the CPU
benchmarks use it. Two heads are offered. ``"paper"`` follows the paper (conv layers, global average pooling, FC, FC->1).
``"authors"`` reproduces the authors' public code (a 1000->1024->512->1 MLP with BatchNorm, PReLU,
dropout and a sigmoid applied to ResNet18's ImageNet logits), kept as an explicit option for comparison.
How a network gets its first weights and how it is written to and read from a file: `weights`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision import transforms
from torchvision.models import resnet18

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
HEADS: tuple[str, ...] = ("paper", "authors")
BACKBONES: tuple[str, ...] = ("resnet18", "small")
NORMS: tuple[str, ...] = ("batch", "group", "none")
_RESNET18_FEATURES = 512
_IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and initialisation of an `IQANet`.

    ``pretrained`` is ``"none"`` (random init), ``"imagenet"`` (torchvision IMAGENET1K_V1, from the hub
    cache or downloaded) or a filesystem path to a torchvision resnet18 state_dict; the ``"small"``
    backbone has no published weights and always starts from random init. ``width`` scales the small
    backbone's channels (base 32: stages of 32, 64, 96, 128 channels).
    """

    backbone: str = "resnet18"
    head: str = "paper"
    hidden: int = 512
    dropout: float = 0.5
    pretrained: str = "none"
    width: int = 32
    norm: str = "none"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; expected one of {NORMS}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {BACKBONES}")
        if self.backbone == "small" and self.head != "paper":
            raise ValueError(
                "the small backbone takes the paper head only (the authors' head reads ImageNet logits)"
            )
        if self.backbone == "small" and self.pretrained != "none":
            raise ValueError("the small backbone has no pretrained weights: use pretrained='none'")
        if self.width < 4:
            raise ValueError(f"width must be >= 4, got {self.width}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; expected one of {HEADS}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.pretrained:
            raise ValueError("pretrained must be 'none', 'imagenet' or a path to a resnet18 state_dict")

    @property
    def batchnorm(self) -> bool:
        """Whether the network has BatchNorm layers (resnet18 and the authors' head; small with norm=batch)."""
        return self.backbone == "resnet18" or self.norm == "batch"

    def describe(self) -> str:
        """The network in a few words, for messages."""
        if self.backbone == "small":
            return f"small (width {self.width}, norm {self.norm})"
        return f"resnet18 ({self.head} head)"

    def to_json(self) -> str:
        """Serialise to a JSON string (stored next to the weights in checkpoints)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Parse a config written by `to_json`, ignoring unknown keys from newer versions."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in data.items():  # a hand-edited or damaged file: say which field is wrong
            expected = type(getattr(cls, key)) if key in fields else object
            if not isinstance(value, (int, float) if expected is float else expected):
                raise ValueError(f"{key} must be {expected.__name__}, got {value!r}")
        return cls(**{k: v for k, v in data.items() if k in fields})


def _paper_head(hidden: int, features: int = _RESNET18_FEATURES) -> nn.Sequential:
    """Paper head on pooled features (512-d for ResNet18): FC -> ReLU -> FC(1)."""
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))


def _authors_head(dropout: float) -> nn.Sequential:
    """The authors' code's head on the 1000 ImageNet logits, ending in a sigmoid (scores in [0, 1])."""
    return nn.Sequential(
        nn.Linear(_IMAGENET_CLASSES, 1024),
        nn.BatchNorm1d(1024),
        nn.PReLU(),
        nn.Dropout(dropout),
        nn.Linear(1024, 512),
        nn.BatchNorm1d(512),
        nn.PReLU(),
        nn.Dropout(dropout),
        nn.Linear(512, 1),
        nn.Sigmoid(),
    )


def _norm(kind: str, channels: int) -> nn.Module:
    """The small backbone's normalisation layer: BatchNorm, GroupNorm (16 channels a group) or none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 16), channels)
    return nn.Identity()


def _conv_block(c_in: int, c_out: int, stride: int, norm: str) -> list[nn.Module]:
    """3x3 convolution (bias only without a norm layer, which would cancel it), norm, ReLU."""
    return [
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none"),
        _norm(norm, c_out),
        nn.ReLU(inplace=True),
    ]


class SmallBackbone(nn.Sequential):
    """A compact CNN: four stages of two 3x3 convolutions (the first with stride 2), ``norm``, ReLU, then
    global average pooling to a ``4 * width``-d feature. Any input size of at least 16 pixels works."""

    def __init__(self, width: int = 32, norm: str = "none") -> None:
        channels = [width, 2 * width, 3 * width, 4 * width]
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in channels:
            layers += _conv_block(c_in, c_out, 2, norm) + _conv_block(c_out, c_out, 1, norm)
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(*layers)
        self.features = c_in
        for module in self.modules():  # He init (as torchvision's ResNet): activations keep their scale
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


class IQANet(nn.Module):
    """Convolutional ``backbone`` + regression ``head``; ``forward`` maps (B, 3, H, W) images to (B,) scores.

    The head always runs in float32, also under bf16 autocast: the scores are a regression target whose
    small differences (the ranking) bf16's 8-bit mantissa would blur.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.backbone: nn.Module
        if self.config.backbone == "small":
            self.backbone = SmallBackbone(self.config.width, self.config.norm)
            self.head = _paper_head(self.config.hidden, self.backbone.features)
        else:
            self.backbone = resnet18(weights=None)
            if self.config.head == "paper":
                self.backbone.fc = nn.Identity()  # conv layers + global average pooling -> 512-d
                self.head = _paper_head(self.config.hidden)
            else:
                self.head = _authors_head(self.config.dropout)  # keeps ResNet18's fc (ImageNet logits)

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(x)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.head(features.float()).squeeze(-1)


def normalize_transform() -> transforms.Normalize:
    """ImageNet normalisation expected by the ResNet18 backbone (apply after ToTensor)."""
    return transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
