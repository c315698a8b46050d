"""The MetaIQA regression network: convolutional features, global average pooling, a fully connected head.

Two backbones are offered. ``"resnet18"`` is the paper's (the convolutional layers of ResNet18, ImageNet
weights available) and the default for the real databases. ``"small"`` is a compact CNN (about 0.5 M
parameters) that learns image quality from scratch in CPU minutes; the demo, the tests and the CPU
benchmarks use it. Two heads are offered. ``"paper"`` follows the paper (conv layers, global average pooling, FC, FC->1).
``"authors"`` reproduces the authors' public code (a 1000->1024->512->1 MLP with BatchNorm, PReLU,
dropout and a sigmoid applied to ResNet18's ImageNet logits), kept as an explicit option for comparison.
Checkpoints are plain tensors plus a JSON config, loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision import transforms
from torchvision.models import ResNet18_Weights, resnet18

from metalearn.checkpoint import atomic_write_bytes, first_nonfinite

__all__ = [
    "BACKBONES",
    "HEADS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IQANet",
    "NORMS",
    "ModelConfig",
    "WeightsError",
    "build_model",
    "imagenet_cache_path",
    "load_model",
    "normalize_transform",
    "save_model",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
HEADS: tuple[str, ...] = ("paper", "authors")
BACKBONES: tuple[str, ...] = ("resnet18", "small")
NORMS: tuple[str, ...] = ("batch", "group", "none")
CHECKPOINT_FORMAT = "metalearn_iqa.IQANet/1"
_RESNET18_FEATURES = 512
_IMAGENET_CLASSES = 1000


class WeightsError(RuntimeError):
    """Pretrained or saved weights could not be found, downloaded or matched to the network."""


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


def imagenet_cache_path() -> Path:
    """Where torch hub caches the resnet18 ImageNet weights (honours TORCH_HOME)."""
    filename = os.path.basename(urlparse(ResNet18_Weights.IMAGENET1K_V1.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _imagenet_state_dict() -> dict[str, Tensor]:
    """ImageNet resnet18 weights from the hub cache, fetched silently first if the cache lacks them."""
    cache = imagenet_cache_path()
    try:
        if not cache.is_file():
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(ResNet18_Weights.IMAGENET1K_V1.url, str(cache), progress=False)
        return torch.load(cache, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsError(
            f"ImageNet weights for resnet18 are not in the torch hub cache ({cache}) and could not be "
            f"downloaded (offline?): pass --weights PATH to a resnet18 state_dict, or --no-pretrained to "
            f"train from scratch [{type(exc).__name__}: {reason}]"
        ) from None


def _file_state_dict(path: str) -> dict[str, Tensor]:
    """A resnet18 state_dict read from ``path`` (tensors only; a ``{"state_dict": ...}`` wrapper is accepted)."""
    if not Path(path).is_file():
        raise WeightsError(f"resnet18 weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or pickled-class files
        raise WeightsError(
            f"could not read resnet18 weights from {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} does not contain a state_dict (got {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_backbone(backbone: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Strictly load ``state`` into ``backbone`` (fc.* ignored when the backbone has no fc layer)."""
    expected = backbone.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.startswith("fc.")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise WeightsError(
            f"{source} is not a resnet18 state_dict: missing keys {missing[:3]}"
            f"{'...' if len(missing) > 3 else ''}, unexpected keys {unexpected[:3]}"
            f"{'...' if len(unexpected) > 3 else ''}"
        )
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise WeightsError(
            f"{source}: shape mismatch for {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        )
    backbone.load_state_dict(state, strict=True)


def build_model(config: ModelConfig | None = None) -> IQANet:
    """Build an `IQANet` and initialise its backbone as ``config.pretrained`` says."""
    config = config or ModelConfig()
    model = IQANet(config)
    if config.pretrained == "none":
        return model
    if config.pretrained == "imagenet":
        _load_backbone(model.backbone, _imagenet_state_dict(), f"ImageNet weights ({imagenet_cache_path()})")
    else:
        _load_backbone(model.backbone, _file_state_dict(config.pretrained), config.pretrained)
    return model


def save_model(
    model: IQANet, config: ModelConfig, path: str | os.PathLike[str], run: Mapping[str, Any] | None = None
) -> Path:
    """Write tensors + JSON config to ``path`` atomically; the file loads with ``weights_only=True``.

    `run` (JSON-serialisable: how the weights were trained) is stored in the file as a JSON string, so a
    model file says everything about itself without a side file (`read_run_info`).
    Weights holding a NaN or an infinity (a diverged run) raise `WeightsError` and nothing is written.
    """
    path = Path(path)
    bad = first_nonfinite(model.state_dict())
    if bad is not None:
        raise WeightsError(f"{path}: refusing to write non-finite weights ({bad}): training diverged")
    extra = {} if run is None else {"run": json.dumps(run, sort_keys=True, default=str)}
    return write_weights(path, CHECKPOINT_FORMAT, config, model.state_dict(), extra)


def write_weights(
    path: Path, fmt: str, config: ModelConfig, state: Mapping[str, Tensor], extra: Mapping[str, str]
) -> Path:
    """The weights file format (model files and QPT backbones alike): `format`, the JSON `config`, CPU
    tensors and `extra` strings, written atomically; it loads with `weights_only=True` (`read_weights`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": fmt,
        "config": config.to_json(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
        **extra,
    }
    atomic_write_bytes(path, lambda fh: torch.save(payload, fh))
    return path


def read_weights(
    path: str | os.PathLike[str],
    fmt: str,
    kind: str,
    hint: str = "",
    map_location: str | torch.device = "cpu",
) -> tuple[Mapping[str, Any], dict[str, Tensor], ModelConfig]:
    """The payload, finite tensors and `ModelConfig` of a `write_weights` file of format `fmt`; anything
    else (a folder, a foreign or damaged file, NaN weights) is a one-line `WeightsError` naming `kind`."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a {kind} file")
    if not path.is_file():
        raise WeightsError(f"{kind} not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise WeightsError(
            f"could not read {kind} {path}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    if not isinstance(payload, Mapping) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise WeightsError(f"{path}: not a {kind} (format {found!r}, expected {fmt!r}){hint}")
    state = payload.get("state_dict")
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: malformed {kind} (state_dict is not a dict of tensors)")
    bad = first_nonfinite(state)
    if bad is not None:
        raise WeightsError(f"{path}: non-finite weights in {bad} (saved by a diverged run?)")
    try:
        config = ModelConfig.from_json(payload["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WeightsError(f"{path}: malformed {kind} (config: {_first_line(exc)})") from None
    return payload, dict(state), config


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def load_model(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[IQANet, ModelConfig]:
    """Rebuild an `IQANet` saved by `save_model` (no pretrained download; weights come from the file)."""
    _, state, config = read_weights(
        path, CHECKPOINT_FORMAT, "metalearn_iqa model checkpoint", map_location=map_location
    )
    model = IQANet(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: weights do not match the saved config: {_first_line(exc)}") from None
    return model, config


def read_run_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The `run` record `save_model` stored in a model file, or None (no such file, older files, fine-tuned
    models)."""
    if not Path(path).is_file():
        return None
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)  # weights unread
        info = json.loads(payload["run"]) if isinstance(payload, Mapping) and "run" in payload else None
    except Exception as exc:  # a damaged file or record: say which
        raise WeightsError(f"{path}: unreadable run record ({type(exc).__name__})") from None
    return info if isinstance(info, dict) else None
