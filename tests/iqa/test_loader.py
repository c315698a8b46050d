"""The training data path: batches built in DataLoader workers equal the in-process ones, the image cache
stays within its bound, and a bad image in a worker is still a one-line error naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.images.decode import read_image
from metalearn_iqa.images.loader import CropLoader, CropSpec
from metalearn_iqa.images.store import ImageStore, map_uint8_npy
from metalearn_iqa.images.transforms import normalise
from metalearn_iqa.training.tasks import (
    DistortionTaskSampler,
    PooledBatchSampler,
    TaskConfig,
    training_batches,
)

CROP = 32


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[IQARecord]:
    """16 noise images of assorted sizes (some below the crop, so they are upscaled), 2 types x 4 contents."""
    root = tmp_path_factory.mktemp("assorted")
    rng = np.random.default_rng(3)
    out = []
    for i in range(16):
        h, w = 24 + 7 * (i % 5), 40 + 11 * (i % 3)
        path = root / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        out.append(IQARecord(str(path), i / 16, float(i), "assorted", 1 + i % 2, 1, f"R{i // 4}"))
    return out


def _maml_like(tasks: list) -> list[torch.Tensor]:
    """What MAML consumes: every support batch and only the first query batch of each task."""
    out = []
    for task in tasks:
        out += [t for batch in task.support for t in batch]
        out += list(next(iter(task.query)))
    return out


def _stream(records: list[IQARecord], store: ImageStore, sampler_cls: type = DistortionTaskSampler) -> list:
    sampler = sampler_cls(records, TaskConfig(crop=CROP, batch_size=3, batches=3), store)
    generator = torch.Generator().manual_seed(7)
    out: list[torch.Tensor] = []
    for iteration in range(3):
        tasks = sampler.sample(2, generator)
        if iteration == 1:  # every batch of every set, twice (the second pass draws fresh crops)
            out += [t for task in tasks for data in (task.support, task.query) * 2 for b in data for t in b]
        else:
            out += _maml_like(tasks)
    return out


@pytest.mark.parametrize("sampler_cls", [DistortionTaskSampler, PooledBatchSampler])
def test_the_same_seed_gives_the_same_batches_with_0_and_2_workers(
    records: list[IQARecord], tmp_path: Path, sampler_cls: type
) -> None:
    serial = _stream(records, ImageStore(), sampler_cls)
    parallel = _stream(records, ImageStore(cache_dir=tmp_path / "cache", workers=2), sampler_cls)
    assert len(serial) == len(parallel) > 0
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))
    other = _stream(records, ImageStore(), sampler_cls)[: len(serial)]
    assert all(torch.equal(a, b) for a, b in zip(serial, other))


def test_fine_tuning_epochs_are_the_same_with_workers(records: list[IQARecord], tmp_path: Path) -> None:
    def epochs(store: ImageStore) -> list[torch.Tensor]:
        batches = training_batches(records, store, CROP, 4, seed=3)
        return [t for _ in range(2) for batch in batches for t in batch]

    serial, parallel = epochs(ImageStore()), epochs(ImageStore(workers=2))
    assert len(serial) == len(parallel) == 2 * 2 * 4
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_a_batch_is_the_crops_its_spec_names(records: list[IQARecord]) -> None:
    """Oracle: crops cut by hand from the decoded files."""
    big = [r for r in records if min(read_image(r.path).shape[1:]) >= CROP][:2]
    spec = CropSpec((big[0].path, big[1].path), ((1, 2, False), (3, 0, True)), CROP, (0.25, 0.5))
    for workers in (0, 2):
        store = ImageStore()
        loader = CropLoader(store, workers)
        (keyed,) = loader.submit([spec])
        inputs, scores = loader.get(keyed)
        a, b = read_image(big[0].path), read_image(big[1].path)
        expected = torch.stack([a[:, 1 : 1 + CROP, 2 : 2 + CROP], b[:, 3 : 3 + CROP, :CROP].flip(-1)])
        assert torch.equal(inputs, normalise(expected))
        assert scores.tolist() == [0.25, 0.5]


def test_a_bad_image_in_a_worker_is_a_one_line_error_naming_it(
    records: list[IQARecord], tmp_path: Path
) -> None:
    bad = tmp_path / "truncated.png"
    bad.write_bytes(Path(records[0].path).read_bytes()[:60])  # a readable header, no pixels
    spec = CropSpec((str(bad),), ((0, 0, False),), CROP, (0.5,))
    store = ImageStore()
    loader = CropLoader(store, workers=1)
    (keyed,) = loader.submit([spec])
    with pytest.raises(DatasetError, match=r"truncated\.png: cannot decode image") as caught:
        loader.get(keyed)
    assert "\n" not in str(caught.value)


def test_the_ram_cache_never_exceeds_its_byte_bound(records: list[IQARecord]) -> None:
    sizes = [read_image(r.path).numel() for r in records]
    bound = 2 * max(sizes)
    store = ImageStore(max_bytes=bound)
    for _ in range(2):
        for record in records:
            assert torch.equal(store(record.path), read_image(record.path))
            assert 0 < store.held_bytes <= bound
    assert store.held < len(records)  # it did evict


def test_the_disk_cache_never_exceeds_its_bound_and_serves_the_rest_from_the_files(
    records: list[IQARecord], tmp_path: Path
) -> None:
    bound = 5 * read_image(records[0].path).numel()
    folder = tmp_path / "cache"
    store = ImageStore(cache_dir=folder, max_bytes=bound, workers=2)
    batches = training_batches(records, store, CROP, 4, seed=0)
    for _ in range(2):
        for _batch in batches:  # worker processes decode and admit concurrently
            pass
    for record in records:
        assert torch.equal(store(record.path), read_image(record.path))
    on_disk = sum(f.stat().st_size for f in folder.glob("*.npy"))
    assert 0 < on_disk == store.held_bytes <= bound
    assert 0 < len(list(folder.glob("*.npy"))) < len(records)


def test_the_disk_cache_decodes_an_edited_image_again(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(path)
    assert int(ImageStore(cache_dir=tmp_path / "cache")(str(path)).max()) == 0
    assert int(ImageStore(cache_dir=tmp_path / "cache")(str(path)).max()) == 0  # reused by a later run
    Image.fromarray(np.full((4, 5, 3), 9, dtype=np.uint8)).save(path)
    os.utime(path, ns=(1, 10**18))
    assert int(ImageStore(cache_dir=tmp_path / "cache")(str(path)).max()) == 9  # the next run sees the edit


def test_train_from_the_cli_gives_the_same_prior_with_2_workers(kadid_root: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from metalearn.cli import main
    from metalearn_iqa.model.weights import load_model

    def train(workers: int) -> dict[str, torch.Tensor]:
        out = tmp_path / f"w{workers}"
        args = [
            "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), "--backbone", "small",
            "--width", "4", "--iterations", "2", "--train-crop", "32", "--batch-size", "2",
            "--inner-steps", "2", "--tasks-per-batch", "2", "--device", "cpu", "--out", str(out),
            "--workers", str(workers), "--image-cache", str(tmp_path / "cache"),
        ]  # fmt: skip
        result = CliRunner().invoke(main, args, catch_exceptions=True)
        assert result.exit_code == 0, result.output
        return load_model(out / "prior.pt")[0].state_dict()

    serial, parallel = train(0), train(2)
    assert all(torch.equal(serial[k], parallel[k]) for k in serial)
    assert list((tmp_path / "cache").glob("*.npy"))


def test_the_disk_cache_maps_npy_files_as_numpy_reads_them_and_names_a_damaged_one(tmp_path: Path) -> None:
    """The cache's own .npy header parser (no `ast`, safe in forked workers) agrees with `np.load`."""

    rng = np.random.default_rng(0)
    for shape in [(3, 5, 7), (1, 1, 1), (3, 300, 1000), (2, 70000)]:
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        np.save(tmp_path / "a.npy", array)
        mapped = map_uint8_npy(tmp_path / "a.npy")
        assert mapped.shape == array.shape and np.array_equal(mapped, np.load(tmp_path / "a.npy"))
        mapped.flat[0] ^= 1  # copy-on-write: the file keeps its bytes
        assert np.array_equal(np.load(tmp_path / "a.npy"), array)
    np.save(tmp_path / "f.npy", np.zeros((2, 2), dtype=np.float32))
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    for name in ("f.npy", "junk.npy"):
        with pytest.raises(DatasetError, match=name):
            map_uint8_npy(tmp_path / name)
