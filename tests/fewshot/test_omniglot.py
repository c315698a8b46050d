"""Omniglot: Lake's and the Vinyals-style splits, image conversion, rotations, errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn.episodes import DatasetError, EpisodeSampler
from metalearn_fewshot.data import omniglot
from metalearn_fewshot.data.omniglot import count_omniglot, load_omniglot, split_characters, vinyals_parts
from tests.fewshot.fixtures import stroke_image, write_omniglot


@pytest.fixture
def root(tmp_path):
    return write_omniglot(tmp_path / "omniglot")


def test_lake_splits_are_the_two_folders(root) -> None:
    background = load_omniglot(root, "background", cache=False)
    assert background.name == "omniglot/background" and background.num_base_classes == 9
    assert background.base_names[:3] == ["Greek/character01", "Greek/character02", "Greek/character03"]
    assert background.sources[0] == str(root / "images_background" / "Greek" / "character01")  # type: ignore[index]
    assert background.images.shape == (36, 1, 28, 28) and background.images.dtype == torch.uint8
    assert load_omniglot(root, "evaluation", cache=False).num_base_classes == 4


def test_vinyals_split_is_a_deterministic_partition_of_both_folders(root) -> None:
    parts = {s: [c.name for c in split_characters(root, s)] for s in omniglot.VINYALS_SPLITS}
    assert [len(parts[s]) for s in ("train", "val", "test")] == list(vinyals_parts(13))
    assert set(parts["train"]) | set(parts["val"]) == set(parts["trainval"])
    everything = parts["train"] + parts["val"] + parts["test"]
    assert len(everything) == len(set(everything)) == 13
    assert parts == {s: [c.name for c in split_characters(root, s)] for s in omniglot.VINYALS_SPLITS}
    # the documented recipe, rebuilt here: pool, sort by name, permute with the fixed seed
    pooled = sorted(c.name for s in ("background", "evaluation") for c in split_characters(root, s))
    order = np.random.default_rng(omniglot.VINYALS_SEED).permutation(13)
    train, val, _ = vinyals_parts(13)
    assert parts["test"] == sorted(pooled[i] for i in order[train + val :])


def test_full_release_proportions() -> None:
    assert vinyals_parts(1623) == (1028, 172, 423)
    train, val, test = vinyals_parts(100)
    assert train + val + test == 100 and test == 26 and val == 11


def test_images_become_28x28_grayscale_with_bright_ink(root) -> None:
    data = load_omniglot(root, "background", cache=False)
    image = data.images[0, 0].numpy()
    assert image.max() > 150 and image.min() == 0  # a thin dark bar on white, inverted and shrunk
    assert (image > 128).mean() < 0.2  # mostly background, which is dark
    # the same conversion by hand: grayscale, Lanczos to 28x28, inverted
    first = sorted((root / "images_background" / "Greek" / "character01").iterdir())[0]
    expected = 255 - np.asarray(Image.open(first).convert("L").resize((28, 28), Image.Resampling.LANCZOS))
    assert np.array_equal(image, expected)
    assert load_omniglot(root, "background", image_size=14, cache=False).images.shape[-2:] == (14, 14)


def test_rotations_quadruple_the_classes(root) -> None:
    data = load_omniglot(root, "background", rotations=4, cache=False)
    assert data.num_classes == 36 and data.num_base_classes == 9
    assert data.class_name(5) == "Greek/character02@90"
    assert torch.equal(data.class_items(2), torch.rot90(data.class_items(0), 2, dims=(-2, -1)))


def test_torchvision_layout_is_found(tmp_path) -> None:
    write_omniglot(tmp_path / "omniglot-py")
    assert load_omniglot(tmp_path, "evaluation", cache=False).num_base_classes == 4


def test_counts_need_no_decoding(root, monkeypatch) -> None:
    monkeypatch.setattr(omniglot, "decode_all", None)  # would fail if called
    counts = count_omniglot(root)
    train, val, test = vinyals_parts(13)
    assert counts == {
        "background": (9, 36),
        "evaluation": (4, 16),
        "train": (train, 4 * train),
        "val": (val, 4 * val),
        "test": (test, 4 * test),
        "trainval": (train + val, 4 * (train + val)),
    }


def test_one_folder_gives_its_lake_split_only(tmp_path) -> None:
    write_omniglot(tmp_path, {"images_background": {"Latin": 2}})
    assert count_omniglot(tmp_path) == {"background": (2, 8)}
    with pytest.raises(DatasetError, match=rf"^{tmp_path / 'images_evaluation'}: Omniglot folder not found$"):
        load_omniglot(tmp_path, "train", cache=False)


def test_missing_root_and_unknown_split(tmp_path, root) -> None:
    with pytest.raises(DatasetError, match=rf"^{tmp_path / 'nowhere'}: Omniglot root folder not found$"):
        load_omniglot(tmp_path / "nowhere", "background")
    with pytest.raises(DatasetError, match="unknown split 'training'"):
        load_omniglot(root, "training")


def test_empty_character_folder_is_named(root) -> None:
    empty = root / "images_evaluation" / "Atlantean" / "character03"
    empty.mkdir()
    with pytest.raises(DatasetError, match=rf"^{empty}: character folder holds no images$"):
        load_omniglot(root, "evaluation", cache=False)


def test_empty_alphabet_folder_is_named(root) -> None:
    (root / "images_background" / "Braille").mkdir()
    with pytest.raises(DatasetError, match="Braille: alphabet folder holds no character folders$"):
        count_omniglot(root)


def test_unreadable_image_is_named(root) -> None:
    bad = root / "images_background" / "Latin" / "character02" / "0099_01.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=rf"^{bad}: cannot decode image \(UnidentifiedImageError\)$"):
        load_omniglot(root, "background", cache=False)


def test_a_character_with_too_few_drawings_is_named_by_the_sampler(root) -> None:
    short = root / "images_background" / "Korean" / "character03"
    for extra in sorted(short.iterdir())[1:]:
        extra.unlink()
    data = load_omniglot(root, "background", cache=False)
    with pytest.raises(
        DatasetError, match=rf"^{short}: class 'Korean/character03' of omniglot/background has 1 items"
    ):
        EpisodeSampler(data, ways=5, shots=1, queries=1)
    with pytest.raises(DatasetError, match="omniglot/evaluation: 4 classes, fewer than the 5 ways"):
        EpisodeSampler(load_omniglot(root, "evaluation", cache=False), ways=5, shots=1, queries=1)


def test_stray_files_and_hidden_folders_are_ignored(root) -> None:
    (root / "images_background" / ".DS_Store").write_text("")
    (root / "images_background" / "Latin" / "character01" / "Thumbs.db").write_text("")
    (root / "images_background" / ".hidden").mkdir()
    stroke_image(1, 1).save(root / "images_background" / "Latin" / "character01" / ".0001_99.png")
    assert load_omniglot(root, "background", cache=False).images.shape[0] == 36
