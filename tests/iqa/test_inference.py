"""Test-time scoring (whole images by default, crops on request) and fine-tuning in epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.evaluation import predict as predict_module
from metalearn_iqa.evaluation.predict import (
    DISPLAY_SIDE,
    EvalConfig,
    display_side,
    evaluate_records,
    predict_records,
)
from metalearn_iqa.images.decode import read_image
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.images.transforms import downscale, normalise
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model
from metalearn_iqa.training import finetune as finetune_module
from metalearn_iqa.training.finetune import FinetuneConfig, finetune
from tests.iqa.spies import SizeSpy


def _png(path: Path, shape: tuple[int, int], seed: int) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def mixed(tmp_path: Path) -> list[IQARecord]:
    """Ten images: six 40x60 and four 50x30, interleaved."""
    shapes = [(40, 60), (50, 30)] * 4 + [(40, 60)] * 2
    return [
        IQARecord(_png(tmp_path / f"{i}.png", shape, i), i / 10, float(i), "x")
        for i, shape in enumerate(shapes)
    ]


def test_whole_images_reach_the_model_by_default(mixed: list[IQARecord]) -> None:
    spy = SizeSpy()
    scores = predict_records(spy, mixed, EvalConfig(batch_size=4))
    assert spy.sizes() == {(40, 60), (50, 30)}
    # images are batched in order of size, so equal sizes share a forward pass; one batch at a time
    assert [s[0] for s in spy.shapes] == [4, 2, 2, 2]
    whole = [float(normalise(read_image(r.path)[None]).mean()) for r in mixed]
    assert scores == pytest.approx(whole, abs=1e-5)  # every pixel counted: nothing was cropped away
    metrics, pred = evaluate_records(spy, mixed)
    assert pred == pytest.approx(scores) and metrics["n"] == 10


def test_crops_only_when_asked(mixed: list[IQARecord]) -> None:
    spy = SizeSpy()
    predict_records(spy, mixed[:2], EvalConfig(crop=32, crops=5))
    assert spy.sizes() == {(32, 32)} and sum(s[0] for s in spy.shapes) == 2 * 5
    spy.shapes.clear()
    predict_records(spy, mixed[:2], EvalConfig(crop=32))
    assert spy.sizes() == {(32, 32)} and sum(s[0] for s in spy.shapes) == 2


def test_max_side_downscales_keeping_the_aspect_ratio(mixed: list[IQARecord]) -> None:
    spy = SizeSpy()
    predict_records(spy, mixed[:2], EvalConfig(max_side=40))
    assert spy.sizes() == {(27, 40), (40, 24)}
    spy.shapes.clear()
    predict_records(spy, mixed[:2], EvalConfig(max_side=100))  # never upscales
    assert spy.sizes() == {(40, 60), (50, 30)}


def test_downscaling_is_anti_aliased() -> None:
    stripes = torch.zeros(3, 64, 64, dtype=torch.uint8)
    stripes[:, :, 1::4] = stripes[:, :, 2::4] = 255  # 0, 255, 255, 0, ...: half the pixels are white
    small = downscale(stripes, 16)
    assert small.shape == (3, 16, 16) and small.dtype == torch.uint8
    # plain bilinear or nearest sampling at 4x would see only the white pixels (255)
    assert (small[:, :, 1:-1].float() - 127.5).abs().max() <= 8


def test_display_sides() -> None:
    assert display_side("KonIQ10k") == 512 and display_side("cid2013") == 800
    assert all(display_side(name) is None for name in ("livec", "tid2013", "kadid10k", "synthetic"))
    assert set(DISPLAY_SIDE) == {"koniq10k", "cid2013", "livec", "tid2013", "kadid10k", "synthetic"}


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"crops": 5}, "crop size"), ({"crops": 3, "crop": 32}, "crops"), ({"max_side": 8}, "max_side")],
)
def test_eval_config_rejects(kw: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EvalConfig(**kw)


# ------------------------------------------------------------------------------------------ fine-tuning


class CountingStore(ImageStore):
    """An image store that counts how often each image is read (one read per crop drawn)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __call__(self, path: str) -> torch.Tensor:
        self.reads.append(path)
        return super().__call__(path)


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(hidden=8))


def test_an_epoch_visits_every_training_image_once(mixed: list[IQARecord]) -> None:
    store = CountingStore()
    model = _tiny_model()
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    config = FinetuneConfig(epochs=3, batch_size=3, crop=32)
    finetune(model, mixed[:7], config, store)
    paths = [r.path for r in mixed[:7]]
    for epoch in range(3):
        assert sorted(store.reads[7 * epoch : 7 * (epoch + 1)]) == sorted(paths)
    assert len(store.reads) == 21
    assert sizes == [3, 4] * 3  # the lone 7th image joins a batch: never a batch of one
    assert store.reads[:7] != store.reads[7:14]  # reshuffled each epoch


def test_learning_rate_follows_the_step_schedule(
    mixed: list[IQARecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    optimizers: list[torch.optim.Optimizer] = []
    real = finetune_module.finetune_optimizer

    def capture(model: nn.Module, config: FinetuneConfig):
        optimizer, schedule = real(model, config)
        optimizers.append(optimizer)
        return optimizer, schedule

    monkeypatch.setattr(finetune_module, "finetune_optimizer", capture)
    model = _tiny_model()
    lrs: list[float] = []
    model.register_forward_pre_hook(lambda module, args: lrs.append(optimizers[0].param_groups[0]["lr"]))
    config = FinetuneConfig(epochs=7, lr=0.01, lr_decay=0.5, decay_every=3, batch_size=5, crop=32)
    finetune(model, mixed, config)  # 10 images: two steps per epoch
    per_epoch = [0.01] * 3 + [0.005] * 3 + [0.0025]  # not compounded within a decay period
    assert lrs == pytest.approx([lr for lr in per_epoch for _ in range(2)])
    group = optimizers[0].param_groups[0]
    assert group["betas"] == (0.9, 0.99) and group["weight_decay"] == config.weight_decay


def test_finetune_returns_a_trained_copy(mixed: list[IQARecord]) -> None:
    model = _tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    same = finetune(model, mixed, FinetuneConfig(epochs=0))
    assert same is not model and all(torch.equal(before[k], v) for k, v in same.state_dict().items())
    tuned = finetune(model, mixed, FinetuneConfig(epochs=1, batch_size=5, crop=32))
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the prior is untouched
    again = finetune(model, mixed, FinetuneConfig(epochs=1, batch_size=5, crop=32))
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in tuned.state_dict().items())  # seeded


def test_finetune_rejects_bad_settings(mixed: list[IQARecord]) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        FinetuneConfig(epochs=1, batch_size=1)
    with pytest.raises(DatasetError, match="at least 2"):
        finetune(_tiny_model(), mixed[:1], FinetuneConfig(epochs=1, crop=32))


class NaNModel(nn.Module):
    """Scores every image NaN, as a model with overflowing weights would."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.mean(dim=(1, 2, 3)) * float("nan")


def test_a_non_finite_score_is_an_error_naming_the_image(mixed: list[IQARecord]) -> None:
    with pytest.raises(ValueError, match=rf"{mixed[0].path}: the model's score is nan"):
        predict_records(NaNModel(), mixed)


def test_diverged_finetuning_raises(mixed: list[IQARecord]) -> None:
    from metalearn import DivergedError

    model = build_model(ModelConfig(backbone="small", width=4))
    config = FinetuneConfig(epochs=3, lr=1e30, batch_size=4, crop=32)
    with pytest.raises(DivergedError, match="fine-tuning diverged in epoch 1: non-finite weights") as caught:
        finetune(model, mixed, config)
    assert caught.value.iteration == 1


class PeakStore(ImageStore):
    """An ImageStore that remembers the most decoded images it ever held; every instance is recorded."""

    made: list[PeakStore] = []

    def __init__(self, capacity: int = 4096) -> None:
        super().__init__(capacity)
        self.peak = 0
        PeakStore.made.append(self)

    def __call__(self, path: str) -> torch.Tensor:
        image = super().__call__(path)
        self.peak = max(self.peak, self.held)
        return image


def test_prediction_holds_at_most_one_batch_of_images(
    mixed: list[IQARecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predict_module, "ImageStore", PeakStore)
    PeakStore.made.clear()
    config = EvalConfig(batch_size=3)
    scores = predict_records(SizeSpy(), mixed, config)
    evaluate_records(SizeSpy(), mixed, config)
    assert len(scores) == len(mixed) == 10
    assert len(PeakStore.made) == 2
    assert all(0 < store.peak <= config.batch_size for store in PeakStore.made)
    shared = ImageStore(capacity=100)  # a caller's store (shared with training) keeps its capacity
    predict_records(SizeSpy(), mixed, config, shared)
    assert shared.held == len(mixed)
