"""mini-ImageNet: the csv layout (resized, EXIF-transposed) and learn2learn's pickles (loaded safely)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from metalearn.episodes import DatasetError
from metalearn_fewshot.data.miniimagenet import count_miniimagenet, load_miniimagenet, read_pickle
from tests.fewshot.fixtures import write_miniimagenet_csv, write_miniimagenet_pickles


def classes_and_items(images: np.ndarray) -> tuple[list[int], list[int]]:
    """Decode the class (red / 20) and item (green / 10) each fixture image carries."""
    return (
        np.round(images[:, 0, 0, 0] / 20).astype(int).tolist(),
        np.round(images[:, 1, 0, 0] / 10).astype(int).tolist(),
    )


def test_csv_layout_resized_to_84_rgb_grouped_by_class(tmp_path) -> None:
    root = write_miniimagenet_csv(tmp_path)
    data = load_miniimagenet(root, "train", cache=False)
    assert data.name == "mini-imagenet/train" and data.images.shape == (16, 3, 84, 84)
    assert data.base_names == ["n00000001", "n00000002", "n00000003", "n00000004"]
    assert data.sources == [str(root / "train.csv")] * 4
    klass, item = classes_and_items(data.images.numpy())
    assert klass == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 and item == [0, 1, 2, 3] * 4
    assert load_miniimagenet(root, "validation", cache=False).num_base_classes == 2
    assert count_miniimagenet(root) == {"train": (4, 16), "val": (2, 8), "test": (3, 12)}


def test_csv_images_are_exif_transposed(tmp_path) -> None:
    root = write_miniimagenet_csv(tmp_path, {"train": 1, "val": 1, "test": 1})
    name = "n0000000100000001.png"
    # stored sideways: red on the left half, blue on the right; EXIF orientation 6 says "rotate 90 cw"
    array = np.zeros((40, 60, 3), dtype=np.uint8)
    array[:, :30, 0], array[:, 30:, 2] = 255, 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).save(root / "images" / name.replace(".png", ".jpg"), exif=exif, quality=95)
    (root / "train.csv").write_text(f"filename,label\n{name.replace('.png', '.jpg')},n00000001\n")
    image = load_miniimagenet(root, "train", image_size=20, cache=False).images[0].numpy()
    # after turning 90 degrees clockwise, the red half is on top and the blue half below
    assert image[0, 2, 10] > 200 and image[2, 2, 10] < 60
    assert image[2, 17, 10] > 200 and image[0, 17, 10] < 60


def test_pickles_group_rows_by_class_and_accept_the_validation_name(tmp_path) -> None:
    root = write_miniimagenet_pickles(tmp_path, val_name="validation")
    data = load_miniimagenet(root, "train", cache=False)
    assert data.images.shape == (16, 3, 84, 84) and data.base_sizes.tolist() == [4, 4, 4, 4]
    klass, item = classes_and_items(data.images.numpy())
    assert klass == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 and item == [0, 1, 2, 3] * 4
    assert load_miniimagenet(root, "val", cache=False).base_names == ["n00000005", "n00000006"]
    small = load_miniimagenet(root, "test", image_size=32, cache=False)
    assert small.images.shape == (12, 3, 32, 32)
    assert count_miniimagenet(root, cache=False) == {"train": (4, 16), "val": (2, 8), "test": (3, 12)}


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_with_code_is_refused_and_not_run(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    path.write_bytes(pickle.dumps({"image_data": Exploit(), "class_dict": {}}))
    with pytest.raises(
        DatasetError,
        match=rf"^{path}: not a readable mini-ImageNet pickle \(refusing to load global posix.system\)$",
    ):
        load_miniimagenet(tmp_path, "train", cache=False)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2], "expected a dict with 'image_data' and 'class_dict'"),
        ({"image_data": np.zeros((2, 4, 4), np.uint8), "class_dict": {"a": [0]}}, "N x H x W x 3 uint8"),
        (
            {"image_data": np.zeros((2, 4, 4, 3), np.uint8), "class_dict": {"a": [0, 2]}},
            "class a lists row 2, outside 0..1",
        ),
        (
            {"image_data": np.zeros((2, 4, 4, 3), np.uint8), "class_dict": {"a": [0], "b": [0, 1]}},
            "row 0 belongs to two classes",
        ),
        ({"image_data": np.zeros((2, 4, 4, 3), np.uint8), "class_dict": {"a": []}}, "class a has no images"),
    ],
)
def test_malformed_pickles_are_named(tmp_path, content, message) -> None:
    path = tmp_path / "mini-imagenet-cache-test.pkl"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(DatasetError, match=rf"^{path}: .*{message}"):
        read_pickle(path)


def test_truncated_pickle_is_named(tmp_path) -> None:
    root = write_miniimagenet_pickles(tmp_path)
    path = root / "mini-imagenet-cache-train.pkl"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match=rf"^{path}: not a readable mini-ImageNet pickle"):
        load_miniimagenet(root, "train", cache=False)


def test_missing_split_file_names_both_layouts(tmp_path) -> None:
    with pytest.raises(
        DatasetError,
        match=rf"^{tmp_path / 'test.csv'}: mini-ImageNet split file not found \(nor mini-imagenet-cache-test.pkl\)$",
    ):
        load_miniimagenet(tmp_path, "test")
    with pytest.raises(DatasetError, match="no mini-ImageNet split found"):
        count_miniimagenet(tmp_path)


def test_a_listed_image_missing_on_disk_is_named(tmp_path) -> None:
    root = write_miniimagenet_csv(tmp_path)
    gone = root / "images" / "n0000000200000003.png"
    gone.unlink()
    with pytest.raises(DatasetError, match=rf"^{gone}: image listed in train.csv not found$"):
        load_miniimagenet(root, "train", cache=False)


def test_unreadable_image_and_bad_csv_are_named(tmp_path) -> None:
    root = write_miniimagenet_csv(tmp_path)
    bad = root / "images" / "n0000000500000001.png"
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(DatasetError, match=rf"^{bad}: cannot decode image"):
        load_miniimagenet(root, "val", cache=False)
    (root / "test.csv").write_text("file,wnid\na.jpg,n1\n")
    with pytest.raises(DatasetError, match=rf"^{root / 'test.csv'}: expected the header 'filename,label'"):
        load_miniimagenet(root, "test", cache=False)
    (root / "test.csv").write_text("filename,label\na.jpg\n")
    with pytest.raises(DatasetError, match=rf"^{root / 'test.csv'}:2: expected 'filename,label'"):
        load_miniimagenet(root, "test", cache=False)
