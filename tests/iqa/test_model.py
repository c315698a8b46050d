"""Tests for the IQA regression network, its weight loading and its checkpoints."""

from __future__ import annotations

import copy
import re
import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from metalearn_iqa.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    IQANet,
    ModelConfig,
    WeightsError,
    build_model,
    load_model,
    normalize_transform,
    save_model,
)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def built() -> dict[str, IQANet]:
    """One seeded model per head, built once; tests that mutate a model take a deepcopy."""
    torch.manual_seed(0)
    return {head: build_model(ModelConfig(head=head)) for head in ("paper", "authors")}


@pytest.mark.parametrize("head", ["paper", "authors"])
def test_output_shape_and_gradients(head: str, built: dict[str, IQANet], images: torch.Tensor) -> None:
    model = copy.deepcopy(built[head]).train()
    scores = model(images)
    assert scores.shape == (2,)
    ((scores - 0.5) ** 2).mean().backward()
    grad = model.backbone.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(images[:1]).shape == (1,)


def test_authors_head_is_sigmoid_on_logits(built: dict[str, IQANet], images: torch.Tensor) -> None:
    model = copy.deepcopy(built["authors"]).eval()
    assert model.backbone.fc.out_features == 1000
    assert isinstance(model.head[-1], torch.nn.Sigmoid)
    with torch.no_grad():
        scores = model(images)
    assert torch.all((scores >= 0) & (scores <= 1))


def test_paper_head_structure() -> None:
    model = IQANet(ModelConfig(hidden=32))
    assert isinstance(model.backbone.fc, torch.nn.Identity)
    assert [m.__class__.__name__ for m in model.head] == ["Linear", "ReLU", "Linear"]
    assert model.head[0].in_features == 512 and model.head[0].out_features == 32


def test_invalid_config() -> None:
    with pytest.raises(ValueError, match="head"):
        ModelConfig(head="vit")
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.0)


@pytest.mark.parametrize("head", ["paper", "authors"])
def test_save_load_round_trip(
    head: str, built: dict[str, IQANet], images: torch.Tensor, tmp_path: Path
) -> None:
    model = copy.deepcopy(built[head]).train()
    config = model.config
    with torch.no_grad():
        model(images)  # move BatchNorm running statistics away from their defaults
    model.eval()
    path = save_model(model, config, tmp_path / "sub" / "model.pt")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    payload = torch.load(path, weights_only=True)
    assert set(payload) >= {"state_dict", "config"}
    loaded, loaded_config = load_model(path)
    assert loaded_config == config
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_load_model_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "absent.pt")
    other = tmp_path / "other.pt"
    torch.save({"a": torch.zeros(1)}, other)
    with pytest.raises(WeightsError, match="not a metalearn_iqa model checkpoint"):
        load_model(other)


def test_missing_weights_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match=re.escape(str(missing))):
        build_model(ModelConfig(pretrained=str(missing)))


def test_bad_keys(tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    torch.save({"foo.weight": torch.zeros(3), "conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(WeightsError) as info:
        build_model(ModelConfig(pretrained=str(path)))
    message = str(info.value)
    assert str(path) in message and "foo.weight" in message and "bn1.weight" in message
    assert "\n" not in message


@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    """A torchvision resnet18 state_dict (seeded), with non-default BatchNorm statistics."""
    torch.manual_seed(123)
    reference = resnet18()
    reference.layer4[1].bn2.running_var.uniform_(0.5, 2.0)
    return reference.state_dict()


def test_wrong_shape(tmp_path: Path, resnet_state: dict[str, torch.Tensor]) -> None:
    state = dict(resnet_state)
    state["conv1.weight"] = torch.zeros(8, 3, 3, 3)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="conv1.weight"):
        build_model(ModelConfig(pretrained=str(path)))


def test_offline_imagenet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as info:
        build_model(ModelConfig(pretrained="imagenet"))
    message = str(info.value)
    assert "not in the torch hub cache" in message and str(tmp_path / "torch_home") in message
    assert "--weights PATH" in message and "--no-pretrained" in message


def test_imagenet_uses_hub_result(
    monkeypatch: pytest.MonkeyPatch, resnet_state: dict[str, torch.Tensor]
) -> None:
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: resnet_state)
    model = build_model(ModelConfig(pretrained="imagenet", head="authors"))  # keeps and loads fc
    torch.testing.assert_close(model.backbone.fc.weight, resnet_state["fc.weight"])
    torch.testing.assert_close(model.backbone.conv1.weight, resnet_state["conv1.weight"])


def test_weights_from_path(tmp_path: Path, resnet_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet_state, path)  # includes fc.*, which the paper head (no fc) ignores
    torch.manual_seed(0)
    scratch = build_model(ModelConfig())
    torch.manual_seed(0)
    model = build_model(ModelConfig(pretrained=str(path)))
    assert not torch.equal(scratch.backbone.conv1.weight, resnet_state["conv1.weight"])
    torch.testing.assert_close(model.backbone.conv1.weight, resnet_state["conv1.weight"])
    bn = "layer4.1.bn2.running_var"
    torch.testing.assert_close(model.backbone.layer4[1].bn2.running_var, resnet_state[bn])
    torch.testing.assert_close(model.head[0].weight, scratch.head[0].weight)  # head is untouched


def test_normalize_transform() -> None:
    norm = normalize_transform()
    assert tuple(norm.mean) == IMAGENET_MEAN and tuple(norm.std) == IMAGENET_STD
    out = norm(torch.ones(3, 2, 2))
    torch.testing.assert_close(out[0], torch.full((2, 2), (1 - 0.485) / 0.229))
