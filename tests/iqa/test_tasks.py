"""Distortion-specific tasks: one per type, support/query split by content, crops, determinism, image access."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn.task import TaskData
from metalearn_iqa.data.kadid10k import load_kadid10k
from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.data.splits import group_by_distortion, split_by_reference
from metalearn_iqa.images import store as store_module
from metalearn_iqa.images.decode import read_image
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.images.transforms import centre_crop, five_crops, normalise, random_crop
from metalearn_iqa.model.network import IMAGENET_MEAN, IMAGENET_STD
from metalearn_iqa.training.tasks import (
    CropBatches,
    DistortionTaskSampler,
    MixedTaskSampler,
    TaskConfig,
    epoch_batches,
    training_batches,
)
from tests.conftest import KADID_LEVELS, KADID_REFS, KADID_TYPES

CROP = 32


@pytest.fixture(scope="module")
def records(kadid_root: Path) -> list[IQARecord]:
    return load_kadid10k(kadid_root)


def _config(**kw: object) -> TaskConfig:
    return TaskConfig(**{"crop": CROP, "batch_size": 2, "batches": 2, **kw})  # type: ignore[arg-type]


def _crops(data: TaskData) -> CropBatches:
    """A task's support or query set, as the samplers build it."""
    assert isinstance(data, CropBatches)
    return data


def _refs(data: TaskData) -> set[str]:
    return {r.reference or r.path for r in _crops(data).records}


def _flat_records(root: Path, refs: int = 3, kinds: tuple[int, ...] = (2, 7)) -> list[IQARecord]:
    """Uniform-colour 8x8 images, one distinct colour per image, score tied to the colour."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[IQARecord] = []
    for ref in range(refs):
        for kind in kinds:
            i = len(out)
            colour = (20 + 9 * i, 200 - 7 * i, (53 * i) % 256)
            path = root / f"flat_{ref}_{kind}.png"
            Image.fromarray(np.full((8, 8, 3), colour, dtype=np.uint8)).save(path)
            out.append(IQARecord(str(path), 0.05 + 0.04 * i, float(i), "flat", kind, 1, f"R{ref}"))
    return out


def _task_tensors(sampler: DistortionTaskSampler, seed: int) -> list[torch.Tensor]:
    tasks = sampler.sample(2, torch.Generator().manual_seed(seed))
    out = []
    for task in tasks:
        for data in (task.support, task.query):
            for inputs, targets in data:
                out += [inputs, targets]
    return out


# ------------------------------------------------------------------------------------------------ tasks


def test_one_task_per_distortion_type(records: list[IQARecord]) -> None:
    sampler = DistortionTaskSampler(records, _config(), ImageStore())
    assert sampler.types == list(KADID_TYPES)
    tasks = sampler.sample(len(KADID_TYPES), torch.Generator().manual_seed(0))
    assert sorted(t.name for t in tasks) == [f"distortion-{k:02d}" for k in KADID_TYPES]
    for task in tasks:
        kind = int(task.name.split("-")[1])
        for data in (task.support, task.query):
            assert {r.distortion for r in _crops(data).records} == {kind}
        assert len(_crops(task.support).records) + len(_crops(task.query).records) == KADID_REFS * len(
            KADID_LEVELS
        )


def test_support_and_query_share_no_reference(records: list[IQARecord]) -> None:
    sampler = DistortionTaskSampler(records, _config(), ImageStore())
    for seed in range(8):
        for task in sampler.sample(3, torch.Generator().manual_seed(seed)):
            support, query = _refs(task.support), _refs(task.query)
            assert support and query
            assert not support & query
            assert support | query == {f"I{r}" for r in [f"{i:02d}" for i in range(1, KADID_REFS + 1)]}


def test_more_tasks_than_types_repeats_types(records: list[IQARecord]) -> None:
    sampler = DistortionTaskSampler(records, _config(), ImageStore())
    tasks = sampler.sample(7, torch.Generator().manual_seed(0))
    assert len(tasks) == 7
    assert {t.name for t in tasks} <= {f"distortion-{k:02d}" for k in KADID_TYPES}
    with pytest.raises(ValueError):
        sampler.sample(0, torch.Generator())


def test_batches_are_normalised_crops_with_matching_targets(tmp_path: Path) -> None:
    flat = _flat_records(tmp_path, refs=4)
    by_colour = {tuple(np.asarray(Image.open(r.path))[0, 0].tolist()): r for r in flat}
    sampler = DistortionTaskSampler(flat, _config(batches=3), ImageStore())
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    seen = 0
    for task in sampler.sample(2, torch.Generator().manual_seed(3)):
        for data in map(_crops, (task.support, task.query)):
            batches = list(data)
            assert len(data) == len(batches) == 3
            for inputs, targets in batches:
                assert inputs.dtype == torch.float32 and targets.dtype == torch.float32
                assert inputs.shape == (2, 3, CROP, CROP) and targets.shape == (2,)
                pixels = (inputs * std + mean) * 255.0  # undo the ImageNet normalisation
                assert torch.allclose(pixels, pixels.round(), atol=1e-3)
                for crop, target in zip(pixels.round().to(torch.int64), targets):
                    # an 8x8 uniform image upsized to the crop stays uniform: its colour names the record
                    assert (crop == crop[:, :1, :1]).all()
                    record = by_colour[tuple(crop[:, 0, 0].tolist())]
                    assert record in data.records
                    assert float(target) == pytest.approx(record.score)
                    seen += 1
    assert seen == 2 * 2 * 3 * 2


def test_same_seed_same_tasks_different_seed_different(records: list[IQARecord]) -> None:
    store = ImageStore()
    a = _task_tensors(DistortionTaskSampler(records, _config(), store), seed=11)
    b = _task_tensors(DistortionTaskSampler(records, _config(), ImageStore()), seed=11)
    c = _task_tensors(DistortionTaskSampler(records, _config(), store), seed=12)
    assert len(a) == len(b)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert len(a) != len(c) or not all(torch.equal(x, y) for x, y in zip(a, c))


def test_each_pass_draws_fresh_crops(records: list[IQARecord]) -> None:
    data = CropBatches(records, ImageStore(), CROP, 2, 1, seed=0)
    first, second = next(iter(data))[0], next(iter(data))[0]
    assert not torch.equal(first, second)


def test_type_with_a_single_reference_is_an_error(records: list[IQARecord]) -> None:
    lonely = [r for r in records if r.distortion == 9 and r.reference == "I01"]
    assert len(lonely) == len(KADID_LEVELS)
    with pytest.raises(DatasetError, match="type 9"):
        DistortionTaskSampler([r for r in records if r.distortion != 9] + lonely, _config())


def test_records_without_a_type_cannot_form_tasks(records: list[IQARecord]) -> None:
    untyped = IQARecord("x.png", 0.5, 0.5, "x")
    with pytest.raises(DatasetError, match="x.png"):
        group_by_distortion([*records, untyped])
    with pytest.raises(DatasetError):
        DistortionTaskSampler([], _config())


def test_mixed_tasks_hold_every_type_split_by_content(records: list[IQARecord]) -> None:
    sampler = MixedTaskSampler(records, _config(composition="mixed"), ImageStore())
    for seed in range(4):
        for task in sampler.sample(2, torch.Generator().manual_seed(seed)):
            support, query = _crops(task.support).records, _crops(task.query).records
            assert {r.distortion for r in support} == {r.distortion for r in query} == set(KADID_TYPES)
            assert not _refs(task.support) & _refs(task.query)
            assert len(support) + len(query) == len(records)
    again = MixedTaskSampler(records, _config(composition="mixed"), ImageStore())
    first = sampler.sample(1, torch.Generator().manual_seed(3))[0]
    assert _refs(again.sample(1, torch.Generator().manual_seed(3))[0].support) == _refs(first.support)


def test_prior_trainer_samples_mixed_tasks_when_asked(records: list[IQARecord]) -> None:
    from metalearn_iqa.model.network import ModelConfig
    from metalearn_iqa.training.prior import PriorConfig, make_trainer

    model = ModelConfig(backbone="small", width=4, hidden=8)
    for composition, sampler in (("type", DistortionTaskSampler), ("mixed", MixedTaskSampler)):
        prior = PriorConfig(
            algorithm="metaiqa", iterations=1, task=_config(composition=composition), model=model
        )
        assert isinstance(make_trainer(prior, records, ImageStore()).sampler, sampler)


@pytest.mark.parametrize(
    "bad", [{"crop": 16}, {"batch_size": 0}, {"support_fraction": 1.0}, {"composition": "per-type"}]
)
def test_task_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _config(**bad)


# ---------------------------------------------------------------------------------------------- splits


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.8, 0.95])
def test_split_by_reference_never_splits_a_content(records: list[IQARecord], fraction: float) -> None:
    contents = {r.reference for r in records}
    for seed in range(10):
        left, right = split_by_reference(records, fraction, torch.Generator().manual_seed(seed))
        left_refs, right_refs = {r.reference for r in left}, {r.reference for r in right}
        assert left and right and not left_refs & right_refs
        assert sorted(map(id, left + right)) == sorted(map(id, records))
        expected = min(len(contents) - 1, max(1, round(fraction * len(contents))))
        assert len(left_refs) == expected


def test_split_by_reference_falls_back_to_the_path_and_needs_two_contents(tmp_path: Path) -> None:
    authentic = [IQARecord(f"img{i}.jpg", i / 10, i, "a") for i in range(10)]
    left, right = split_by_reference(authentic, 0.8, torch.Generator().manual_seed(0))
    assert len(left) == 8 and len(right) == 2
    assert not {r.path for r in left} & {r.path for r in right}
    same = [IQARecord(f"img{i}.jpg", 0.5, 1, "a", 1, 1, "R") for i in range(4)]
    with pytest.raises(DatasetError, match="cannot split"):
        split_by_reference(same, 0.5, torch.Generator())


# ---------------------------------------------------------------------------------------------- images


def _png(path: Path, shape: tuple[int, int], value: int | None = None) -> str:
    array = (
        np.full((*shape, 3), value, dtype=np.uint8)
        if value is not None
        else np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    )
    Image.fromarray(array).save(path)
    return str(path)


def test_image_store_is_an_lru_cache_of_its_capacity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [_png(tmp_path / f"{n}.png", (4, 4), 10 * i) for i, n in enumerate("abc")]
    a, b, c = paths
    reads: list[str] = []
    real = store_module.read_image

    def counting(path: str) -> torch.Tensor:
        reads.append(Path(path).stem)
        return real(path)

    monkeypatch.setattr(store_module, "read_image", counting)
    store = ImageStore(capacity=2)
    first = store(a)
    store(b)
    assert store(a) is first  # cached, and now the most recently used
    store(c)  # evicts b, the least recently used
    assert len(store._cache) == 2
    assert reads == ["a", "b", "c"]
    store(a)
    assert reads == ["a", "b", "c"]
    store(b)
    assert reads == ["a", "b", "c", "b"]
    assert len(store._cache) == 2
    assert int(store(b)[0, 0, 0]) == 10


def test_read_image_gives_uint8_rgb_and_names_a_corrupt_file(tmp_path: Path) -> None:
    image = read_image(_png(tmp_path / "ok.png", (5, 7)))
    assert image.dtype == torch.uint8 and image.shape == (3, 5, 7)
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DatasetError, match="broken.png") as info:
        read_image(corrupt)
    assert "\n" not in str(info.value)
    with pytest.raises(DatasetError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DatasetError, match="broken.png"):
        ImageStore()(str(corrupt))


@pytest.mark.parametrize("shape", [(8, 8), (8, 20), (40, 33)])
def test_crops_upsize_small_images(shape: tuple[int, int], tmp_path: Path) -> None:
    image = read_image(_png(tmp_path / "img.png", shape))
    g = torch.Generator().manual_seed(0)
    views = [random_crop(image, CROP, g), centre_crop(image, CROP), *five_crops(image, CROP)]
    for view in views:
        assert view.shape == (3, CROP, CROP) and view.dtype == torch.uint8
    flat = read_image(_png(tmp_path / "flat.png", shape, value=77))
    assert (random_crop(flat, CROP, g) == 77).all()
    big = read_image(_png(tmp_path / "big.png", (40, 33)))
    assert torch.equal(centre_crop(big, CROP), big[:, 4:36, 0:32])  # no resampling when it fits


def test_normalise_is_imagenet_normalisation() -> None:
    batch = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalise(batch)
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], expected)


def test_training_crops_are_flipped_at_random_and_reproducibly(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8)[None, :, None], (CROP, 1, 3))  # left-right asymmetric
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    image = read_image(tmp_path / "ramp.png")
    records = [IQARecord(str(tmp_path / "ramp.png"), 0.5, 0.5, "x")] * 2
    views = {"plain": normalise(image[None])[0], "flipped": normalise(image.flip(-1)[None])[0]}

    def orientations(seed: int) -> list[str]:
        data = CropBatches(records, ImageStore(), CROP, 2, 8, seed=seed)  # crop = image: only flips vary
        seen = [
            name for batch, _ in data for crop in batch for name, v in views.items() if torch.equal(crop, v)
        ]
        assert len(seen) == 16  # every crop is the image or its mirror
        return seen

    first = orientations(seed=3)
    assert set(first) == {"plain", "flipped"}
    assert orientations(seed=3) == first


@pytest.mark.parametrize(
    ("n", "size", "expected"), [(7, 3, [3, 4]), (8, 3, [3, 3, 2]), (6, 3, [3, 3]), (2, 8, [2])]
)
def test_epoch_batches_cover_every_index_once(n: int, size: int, expected: list[int]) -> None:
    batches = epoch_batches(n, size, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == expected
    assert sorted(i for b in batches for i in b) == list(range(n))


def test_fine_tuning_batches_are_epochs(records: list[IQARecord]) -> None:
    data = training_batches(records[:7], ImageStore(), CROP, 3, seed=0)
    assert len(data) == 2
    assert [scores.numel() for _, scores in data] == [3, 4]
