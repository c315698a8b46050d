"""The QPT network (an `IQANet` backbone plus a projection head, dropped after pre-training) and the
backbone file it leaves: tensors plus a JSON config, loadable with `weights_only=True`, that initialises
the backbone of `train`, `finetune`, `lodo` and `cross` (`--init PATH`)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from metalearn.checkpoint import first_nonfinite
from metalearn_iqa.model.network import IQANet, ModelConfig
from metalearn_iqa.model.weights import WeightsError, build_model, read_weights, write_weights

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
    path = Path(path)
    bad = first_nonfinite(backbone.state_dict())
    if bad is not None:
        raise WeightsError(f"{path}: refusing to write non-finite weights ({bad}): pre-training diverged")
    summary_json = json.dumps(dict(summary), default=str)
    return write_weights(path, BACKBONE_FORMAT, config, backbone.state_dict(), {"summary": summary_json})


def read_backbone(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], ModelConfig]:
    """The backbone state_dict and `ModelConfig` of a file `save_backbone` wrote; else a one-line error."""
    hint = "; make one with `metalearn iqa pretrain --method qpt`"
    _, state, config = read_weights(path, BACKBONE_FORMAT, "QPT backbone file", hint)
    return state, config


def check_compatible(saved: ModelConfig, target: ModelConfig, path: str | os.PathLike[str]) -> None:
    """Refuse, in one line, a backbone file whose architecture is not the network's."""
    keys = ("backbone", "width", "norm") if target.backbone == "small" else ("backbone", "head")
    if any(getattr(saved, k) != getattr(target, k) for k in keys):
        raise WeightsError(
            f"{path}: a QPT backbone for {saved.describe()}, but the network is {target.describe()}; "
            f"pass the matching --backbone/--width/--norm/--head"
        )


def init_backbone(
    model: IQANet, path: str | os.PathLike[str], read: tuple[dict[str, Tensor], ModelConfig] | None = None
) -> IQANet:
    """Load a QPT backbone file (or what `read_backbone` already `read` of it) into `model.backbone`;
    the head keeps its own initialisation."""
    state, saved = read or read_backbone(path)
    check_compatible(saved, model.config, path)
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0].rstrip(":")
        raise WeightsError(f"{path}: the backbone weights do not fit the network ({first})") from None
    return model


def model_from_backbone(path: str | os.PathLike[str], seed: int = 0) -> IQANet:
    """An `IQANet` with the file's backbone and a fresh head (seeded), ready to fine-tune."""
    read = read_backbone(path)
    torch.manual_seed(seed)
    return init_backbone(IQANet(dataclasses.replace(read[1], pretrained="none")), path, read)
