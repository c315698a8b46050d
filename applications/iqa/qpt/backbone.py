"""The QPT network (an `IQANet` backbone plus a projection head, dropped after pre-training) and the
backbone file it leaves: tensors plus a JSON config, loadable with `weights_only=True`, that initialises
the backbone of `train`, `finetune`, `lodo` and `cross` (`--init PATH`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from metalearn.checkpoint import atomic_write_bytes, first_nonfinite
from metalearn_iqa.model import IQANet, ModelConfig, WeightsError, build_model

BACKBONE_FORMAT = "metalearn_iqa.QPTBackbone/1"


def feature_dim(backbone: nn.Module) -> int:
    """The width of the backbone's output (its pooled features, or ResNet18's logits with its fc kept)."""
    if hasattr(backbone, "features") and isinstance(backbone.features, int):
        return backbone.features
    fc = getattr(backbone, "fc", None)
    return fc.out_features if isinstance(fc, nn.Linear) else 512


class QPTNet(nn.Module):
    """`backbone` (as an `IQANet` of `config` builds it, initialised as `config.pretrained` says) and a
    projection MLP (features -> `hidden` -> ReLU -> `dim`) whose output the contrastive loss compares."""

    def __init__(self, config: ModelConfig, dim: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_model(config).backbone
        features = feature_dim(self.backbone)
        self.projection = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(x)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.projection(features.float())


def save_backbone(
    backbone: nn.Module, config: ModelConfig, path: str | os.PathLike[str], summary: Mapping[str, Any]
) -> Path:
    """Write the backbone's tensors, its `ModelConfig` and the run's `summary` (JSON-able) atomically."""
    import json

    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    bad = first_nonfinite(state)
    if bad is not None:
        raise WeightsError(f"{path}: refusing to write non-finite weights ({bad}): pre-training diverged")
    payload = {
        "format": BACKBONE_FORMAT,
        "config": config.to_json(),
        "summary": json.dumps(dict(summary), default=str),
        "state_dict": state,
    }
    atomic_write_bytes(path, lambda fh: torch.save(payload, fh))
    return path


def read_backbone(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], ModelConfig]:
    """The backbone state_dict and `ModelConfig` of a file `save_backbone` wrote; else a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: QPT backbone file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise WeightsError(f"{path}: not a readable QPT backbone file ({type(exc).__name__})") from None
    if not isinstance(payload, Mapping) or payload.get("format") != BACKBONE_FORMAT:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise WeightsError(
            f"{path}: not a QPT backbone file (format {found!r}, expected {BACKBONE_FORMAT!r}); "
            "make one with `metalearn iqa pretrain --method qpt`"
        )
    try:
        config = ModelConfig.from_json(payload["config"])
        state = dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: damaged QPT backbone file ({type(exc).__name__}: {exc})") from None
    bad = first_nonfinite(state)
    if bad is not None:
        raise WeightsError(f"{path}: non-finite weights in {bad}")
    return state, config


def _describe(config: ModelConfig) -> str:
    if config.backbone == "small":
        return f"small (width {config.width}, norm {config.norm})"
    return f"resnet18 ({config.head} head)"


def check_compatible(saved: ModelConfig, target: ModelConfig, path: str | os.PathLike[str]) -> None:
    """Refuse, in one line, a backbone file whose architecture is not the network's."""
    keys = ("backbone", "width", "norm") if target.backbone == "small" else ("backbone", "head")
    if any(getattr(saved, k) != getattr(target, k) for k in keys):
        raise WeightsError(
            f"{path}: a QPT backbone for {_describe(saved)}, but the network is {_describe(target)}; "
            f"pass the matching --backbone/--width/--norm/--head"
        )


def init_backbone(model: IQANet, path: str | os.PathLike[str]) -> IQANet:
    """Load a QPT backbone file into `model.backbone` (the head keeps its own initialisation)."""
    state, saved = read_backbone(path)
    check_compatible(saved, model.config, path)
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0].rstrip(":")
        raise WeightsError(f"{path}: the backbone weights do not fit the network ({first})") from None
    return model


def model_from_backbone(path: str | os.PathLike[str], seed: int = 0, hidden: int | None = None) -> IQANet:
    """An `IQANet` with the file's backbone and a fresh head (seeded), ready to fine-tune."""
    _, saved = read_backbone(path)
    config = dataclasses.replace(saved, pretrained="none", hidden=hidden or saved.hidden)
    torch.manual_seed(seed)
    return init_backbone(IQANet(config), path)
