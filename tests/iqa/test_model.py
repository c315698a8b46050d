"""Tests for the IQA regression network, its weight loading and its checkpoints."""

from __future__ import annotations

import copy
import re
import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import ResNet, resnet18

from metalearn_iqa.model.network import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    IQANet,
    ModelConfig,
    SmallBackbone,
    normalize_transform,
)
from metalearn_iqa.model.weights import WeightsError, build_model, load_model, save_model


def resnet(model: IQANet) -> ResNet:
    """The ResNet18 backbone of `model` (typed as one)."""
    assert isinstance(model.backbone, ResNet)
    return model.backbone


def small(model: IQANet) -> SmallBackbone:
    assert isinstance(model.backbone, SmallBackbone)
    return model.backbone


def linear(module: nn.Module) -> nn.Linear:
    assert isinstance(module, nn.Linear)
    return module


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
    grad = resnet(model).conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(images[:1]).shape == (1,)


def test_authors_head_is_sigmoid_on_logits(built: dict[str, IQANet], images: torch.Tensor) -> None:
    model = copy.deepcopy(built["authors"]).eval()
    assert resnet(model).fc.out_features == 1000
    assert isinstance(model.head[-1], torch.nn.Sigmoid)
    with torch.no_grad():
        scores = model(images)
    assert torch.all((scores >= 0) & (scores <= 1))


def test_paper_head_structure() -> None:
    model = IQANet(ModelConfig(hidden=32))
    assert isinstance(resnet(model).fc, torch.nn.Identity)
    assert [m.__class__.__name__ for m in model.head] == ["Linear", "ReLU", "Linear"]
    assert linear(model.head[0]).in_features == 512 and linear(model.head[0]).out_features == 32


def test_invalid_config() -> None:
    with pytest.raises(ValueError, match="head"):
        ModelConfig(head="vit")
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match="backbone"):
        ModelConfig(backbone="resnet50")
    with pytest.raises(ValueError, match="paper head only"):
        ModelConfig(backbone="small", head="authors")
    with pytest.raises(ValueError, match="no pretrained weights"):
        ModelConfig(backbone="small", pretrained="imagenet")
    with pytest.raises(ValueError, match="width"):
        ModelConfig(backbone="small", width=2)
    with pytest.raises(ValueError, match="norm"):
        ModelConfig(backbone="small", norm="layer")


# ------------------------------------------------------------------------------------- small backbone

SMALL = ModelConfig(backbone="small", hidden=16, width=4)


@pytest.mark.parametrize("size", [(16, 16), (33, 47), (64, 40)])
def test_small_backbone_scores_any_size(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(SMALL).train()  # batch statistics: untrained running statistics shrink activations
    assert small(model).features == 16  # 4 * width
    x = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3,) and torch.isfinite(out).all()
    assert not torch.allclose(out, out[0].expand(3))  # different images, different scores


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_small_backbone_norms(norm: str) -> None:
    model = IQANet(ModelConfig(backbone="small", width=16, norm=norm))
    kinds = {type(m).__name__ for m in small(model)}
    expected = {"batch": "BatchNorm2d", "group": "GroupNorm", "none": None}[norm]
    assert ("BatchNorm2d" in kinds) == (expected == "BatchNorm2d")
    assert ("GroupNorm" in kinds) == (expected == "GroupNorm")
    convs = [m for m in small(model) if isinstance(m, torch.nn.Conv2d)]
    assert all((c.bias is not None) == (norm == "none") for c in convs)


def test_small_backbone_has_under_a_million_parameters() -> None:
    model = IQANet(ModelConfig(backbone="small", hidden=128))
    n = sum(p.numel() for p in model.parameters())
    resnet = sum(p.numel() for p in IQANet(ModelConfig(hidden=128)).parameters())
    assert 100_000 < n < 1_000_000 and n < resnet / 10


def test_small_backbone_round_trip_keeps_its_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(backbone="small", hidden=16, width=8, norm="group")
    model = build_model(config).eval()
    path = save_model(model, config, tmp_path / "small.pt")
    payload = torch.load(path, weights_only=True)
    assert '"backbone": "small"' in payload["config"] and '"width": 8' in payload["config"]
    loaded, loaded_config = load_model(path)
    assert loaded_config == config and isinstance(loaded.backbone, torch.nn.Sequential)
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x), rtol=0, atol=0)


# --------------------------------------------------------------------------------- fp32 head, autocast


def _head_input_dtypes(model: IQANet) -> list[torch.dtype]:
    """Record the dtype of every input to the head's Linear layers."""
    seen: list[torch.dtype] = []
    for layer in model.head:
        if isinstance(layer, torch.nn.Linear):
            layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    return seen


def _autocast_scores(device: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = build_model(SMALL).to(device).eval()
    seen = _head_input_dtypes(model)
    backbone_dtypes: list[torch.dtype] = []
    small(model)[0].register_forward_hook(lambda _m, _a, out: backbone_dtypes.append(out.dtype))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad(), torch.autocast(device, dtype=dtype):
        out = model(x)
    assert backbone_dtypes == [dtype]  # autocast is really on for the backbone
    assert out.dtype == torch.float32
    assert seen == [torch.float32, torch.float32]  # both Linear layers of the head run in float32


def test_head_runs_in_float32_under_cpu_autocast() -> None:
    _autocast_scores("cpu", torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_head_runs_in_float32_under_cuda_autocast(dtype: torch.dtype) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    _autocast_scores("cuda", dtype)


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


def test_non_finite_weights_are_never_written_or_loaded(tmp_path: Path) -> None:
    config = ModelConfig(backbone="small", width=4)
    model = build_model(config)
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(WeightsError, match="refusing to write non-finite weights"):
        save_model(model, config, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists() and not list(tmp_path.iterdir())
    path = save_model(build_model(config), config, tmp_path / "prior.pt")
    payload = torch.load(path, weights_only=True)
    next(iter(payload["state_dict"].values()))[0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(WeightsError, match=rf"{re.escape(str(path))}: non-finite weights in "):
        load_model(path)


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


def test_offline_imagenet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as info:
        build_model(ModelConfig(pretrained="imagenet"))
    message = str(info.value)
    assert "\n" not in message and "network unreachable" in message
    assert "not in the torch hub cache" in message and str(tmp_path / "torch_home") in message
    assert "--weights PATH" in message and "--no-pretrained" in message
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # nothing printed besides the error


def test_imagenet_is_fetched_once_into_the_hub_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, resnet_state: dict[str, torch.Tensor]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    fetched: list[tuple[str, bool]] = []

    def download(url: str, dst: str, hash_prefix: object = None, progress: bool = True) -> None:
        fetched.append((url, progress))
        torch.save(resnet_state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    for _ in range(2):
        model = build_model(ModelConfig(pretrained="imagenet", head="authors"))  # keeps and loads fc
        torch.testing.assert_close(resnet(model).fc.weight, resnet_state["fc.weight"])
        torch.testing.assert_close(resnet(model).conv1.weight, resnet_state["conv1.weight"])
    assert len(fetched) == 1 and "resnet18" in fetched[0][0] and fetched[0][1] is False  # cached, silent


def test_weights_from_path(tmp_path: Path, resnet_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet_state, path)  # includes fc.*, which the paper head (no fc) ignores
    torch.manual_seed(0)
    scratch = build_model(ModelConfig())
    torch.manual_seed(0)
    model = build_model(ModelConfig(pretrained=str(path)))
    assert not torch.equal(resnet(scratch).conv1.weight, resnet_state["conv1.weight"])
    torch.testing.assert_close(resnet(model).conv1.weight, resnet_state["conv1.weight"])
    bn = "layer4.1.bn2.running_var"
    torch.testing.assert_close(resnet(model).layer4[1].bn2.running_var, resnet_state[bn])
    torch.testing.assert_close(
        linear(model.head[0]).weight, linear(scratch.head[0]).weight
    )  # head is untouched


def test_normalize_transform() -> None:
    norm = normalize_transform()
    assert tuple(norm.mean) == IMAGENET_MEAN and tuple(norm.std) == IMAGENET_STD
    out = norm(torch.ones(3, 2, 2))
    torch.testing.assert_close(out[0], torch.full((2, 2), (1 - 0.485) / 0.229))
