"""An `IQANet`'s weights: its initialisation (`build_model`: ImageNet or a resnet18 file) and its files.

A model file holds plain tensors, the `ModelConfig` as JSON and, optionally, the run record of how the
weights were trained; it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights

from metalearn.checkpoint import atomic_write_bytes, first_nonfinite
from metalearn_iqa.model.network import IQANet, ModelConfig

CHECKPOINT_FORMAT = "metalearn_iqa.IQANet/1"
"""The `format` of a model file (unchanged since the first release: older files load)."""


class WeightsError(RuntimeError):
    """Pretrained or saved weights could not be found, downloaded or matched to the network."""


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


def init_label(pretrained: str) -> str:
    """How a backbone was initialised (`ModelConfig.pretrained`), for reports: "imagenet", "scratch" or the
    weights file's path."""
    return "scratch" if pretrained == "none" else pretrained


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
