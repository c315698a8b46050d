"""`ClassDataset` and `EpisodeSampler`: what an episode holds, its labels, rotations, determinism, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from metalearn import TaskSampler
from metalearn.episodes import ClassDataset, DatasetError, EpisodeSampler
from tests.helpers import one_batch


def coded_dataset(sizes: list[int], side: int = 6, channels: int = 1, rotations: int = 1) -> ClassDataset:
    """Item i of class c has pixel (0, 0) = c and (0, 1) = i, and a marker at (side-1, 0): rotations show."""
    images = torch.zeros(sum(sizes), channels, side, side, dtype=torch.uint8)
    row = 0
    for c, size in enumerate(sizes):
        for i in range(size):
            images[row, :, 0, 0], images[row, :, 0, 1], images[row, :, side - 1, 0] = c, i, 200
            row += 1
    return ClassDataset(images, sizes, [f"c{c}" for c in range(len(sizes))], "toy", rotations=rotations)


def decode(x: torch.Tensor) -> tuple[list[int], list[int]]:
    """(class, item) of each float image (values were uint8 / 255)."""
    u = (x * 255).round().long()
    return u[:, 0, 0, 0].tolist(), u[:, 0, 0, 1].tolist()


def test_an_episode_holds_ways_classes_with_distinct_support_and_query_items() -> None:
    sampler = EpisodeSampler(coded_dataset([12, 9, 10, 15, 8, 11]), ways=4, shots=2, queries=3)
    assert isinstance(sampler, TaskSampler)
    for task in sampler.sample(20, torch.Generator().manual_seed(0)):
        (xs, ys), (xq, yq) = one_batch(task.support), one_batch(task.query)
        assert xs.dtype == torch.float32 and xs.shape == (8, 1, 6, 6) and xq.shape == (12, 1, 6, 6)
        assert ys.dtype == torch.int64 and ys.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert yq.tolist() == [j for j in range(4) for _ in range(3)]
        s_class, s_item = decode(xs)
        q_class, q_item = decode(xq)
        label_class: dict[int, int] = {}
        for label, c in zip(ys.tolist() + yq.tolist(), s_class + q_class):
            assert label_class.setdefault(label, c) == c  # one class per label, in support and query
        assert len(set(label_class.values())) == 4  # four different classes
        for label, c in label_class.items():
            items = [i for lab, i in zip(ys.tolist() + yq.tolist(), s_item + q_item) if lab == label]
            assert len(set(items)) == 5  # no item twice: support and query disjoint
            assert max(items) < [12, 9, 10, 15, 8, 11][c]


def test_labels_are_assigned_to_classes_in_a_random_order() -> None:
    sampler = EpisodeSampler(coded_dataset([5] * 10), ways=5, shots=1, queries=1)
    generator = torch.Generator().manual_seed(3)
    orders = set()
    first_class = []
    for _ in range(200):
        index = sampler.draw(generator)
        orders.add(tuple(torch.argsort(index.classes).tolist()))
        first_class.append(int(index.classes[0]))
    assert len(orders) > 50  # not sorted by class number: label j goes to any of the chosen classes
    # label 0's class is uniform over the 10 classes (chi-square, an independent check of the draw)
    counts = np.bincount(first_class, minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_items_are_drawn_uniformly_within_a_class() -> None:
    sampler = EpisodeSampler(coded_dataset([7, 30]), ways=2, shots=1, queries=2)
    generator = torch.Generator().manual_seed(0)
    drawn = torch.zeros(30)
    for _ in range(1500):
        index = sampler.draw(generator)
        big = int(torch.nonzero(index.classes == 1))
        drawn[index.items[big]] += 1
    assert stats.chisquare(drawn.numpy()).pvalue > 1e-3


def test_same_generator_state_gives_the_same_episodes_whatever_n() -> None:
    sampler = EpisodeSampler(coded_dataset([6] * 8, rotations=4), ways=5, shots=2, queries=2)
    batch = sampler.sample(4, torch.Generator().manual_seed(9))
    generator = torch.Generator().manual_seed(9)
    singles = [sampler.sample(1, generator)[0] for _ in range(4)]
    for a, b in zip(batch, singles):
        assert a.name == b.name
        assert torch.equal(one_batch(a.support)[0], one_batch(b.support)[0])
        assert torch.equal(one_batch(a.query)[0], one_batch(b.query)[0])
    other = sampler.sample(4, torch.Generator().manual_seed(10))
    assert [t.name for t in other] != [t.name for t in batch]


def test_rotated_classes_are_the_base_items_turned_counter_clockwise() -> None:
    dataset = coded_dataset([4, 4, 4], rotations=4)
    assert dataset.num_classes == 12 and dataset.num_base_classes == 3 and len(dataset) == 48
    assert [dataset.class_name(i) for i in range(4)] == ["c0", "c0@90", "c0@180", "c0@270"]
    sampler = EpisodeSampler(dataset, ways=12, shots=1, queries=3)
    index = sampler.draw(torch.Generator().manual_seed(1))
    task = sampler.episode(index)
    xs = one_batch(task.support)[0]
    base = dataset.images.float() / 255
    for label, c in enumerate(index.classes.tolist()):
        base_class, turns = divmod(c, 4)
        row = int(dataset.base_starts[base_class]) + int(index.items[label, 0])
        expected = torch.rot90(base[row], turns, dims=(-2, -1))
        assert torch.equal(xs[label], expected)
        assert torch.equal(dataset.class_items(c)[int(index.items[label, 0])].float() / 255, expected)
    # a quarter turn counter-clockwise moves the bottom-left marker to the bottom-right
    turned = dataset.class_items(1)[0, 0]
    assert turned[5, 5] == 200 and turned[5, 0] == 0


def test_two_rotations_are_0_and_180_degrees_and_need_no_square() -> None:
    images = torch.arange(2 * 1 * 2 * 3, dtype=torch.uint8).view(2, 1, 2, 3)
    dataset = ClassDataset(images, [1, 1], ["a", "b"], rotations=2)
    assert [dataset.class_name(i) for i in range(4)] == ["a", "a@180", "b", "b@180"]
    assert torch.equal(dataset.class_items(1)[0], torch.rot90(images[0], 2, dims=(-2, -1)))
    with pytest.raises(DatasetError, match="square"):
        dataset.with_rotations(4)


def test_normalize_maps_uint8_to_mean_and_std_per_channel() -> None:
    dataset = coded_dataset([3, 3], channels=3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    plain = EpisodeSampler(dataset, 2, 1, 2).sample(1, torch.Generator().manual_seed(0))[0]
    normed = EpisodeSampler(dataset, 2, 1, 2, normalize=(mean, std)).sample(
        1, torch.Generator().manual_seed(0)
    )[0]
    plain_x, normed_x = one_batch(plain.support)[0], one_batch(normed.support)[0]
    expected = (plain_x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(normed_x, expected, atol=1e-6)
    with pytest.raises(ValueError, match="3 means"):
        EpisodeSampler(dataset, 2, 1, 2, normalize=((0.5,), (0.2,)))


def test_a_memory_mapped_array_serves_episodes(tmp_path) -> None:
    dataset = coded_dataset([5, 5, 5])
    np.save(tmp_path / "items.npy", dataset.images.numpy())
    mapped = np.load(tmp_path / "items.npy", mmap_mode="c")
    on_disk = ClassDataset(mapped, [5, 5, 5], ["c0", "c1", "c2"], "mapped")
    a = EpisodeSampler(on_disk, 3, 2, 3).sample(2, torch.Generator().manual_seed(4))
    b = EpisodeSampler(dataset, 3, 2, 3).sample(2, torch.Generator().manual_seed(4))
    assert all(torch.equal(one_batch(x.support)[0], one_batch(y.support)[0]) for x, y in zip(a, b))
    with pytest.raises(DatasetError, match="mmap_mode='c'"):
        ClassDataset(np.load(tmp_path / "items.npy", mmap_mode="r"), [5, 5, 5], ["a", "b", "c"])


def test_from_labels_groups_items_by_class() -> None:
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1)
    dataset = ClassDataset.from_labels(images, [2, 0, 1, 0, 2, 2], ["a", "b", "c"], "mixed")
    assert dataset.base_sizes.tolist() == [2, 1, 3]
    assert dataset.class_items(0).flatten().tolist() == [1, 3]
    assert dataset.class_items(2).flatten().tolist() == [0, 4, 5]


def test_a_split_with_fewer_classes_than_ways_is_refused() -> None:
    with pytest.raises(DatasetError, match=r"^toy: 3 classes, fewer than the 5 ways"):
        EpisodeSampler(coded_dataset([5, 5, 5]), ways=5, shots=1, queries=1)
    # rotations count as classes
    EpisodeSampler(coded_dataset([5, 5], rotations=4), ways=5, shots=1, queries=1)


def test_a_class_with_too_few_items_is_named_with_its_source() -> None:
    images = torch.zeros(9, 1, 2, 2, dtype=torch.uint8)
    dataset = ClassDataset(images, [5, 2, 2], ["a", "b", "c"], "omni/train", sources=["/d/a", "/d/b", "/d/c"])
    with pytest.raises(
        DatasetError, match=r"^/d/b: class 'b' of omni/train has 2 items, fewer than shots \+ queries = 3$"
    ):
        EpisodeSampler(dataset, ways=2, shots=1, queries=2)
    with pytest.raises(DatasetError, match=r"^class 'b' of toy: class 'b' of toy has 2 items"):
        EpisodeSampler(ClassDataset(images, [5, 2, 2], ["a", "b", "c"], "toy"), 2, 1, 2)


@pytest.mark.parametrize(
    ("sizes", "names", "message"),
    [
        ([3, 3], ["a"], "2 class sizes but 1 class names"),
        ([3, 2], ["a", "b"], "class sizes sum to 5, but there are 6 items"),
        ([3, 3], ["a", "a"], "class names repeat"),
    ],
)
def test_inconsistent_class_tables_are_refused(sizes: list[int], names: list[str], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        ClassDataset(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), sizes, names)


def test_bad_sampler_settings_are_refused() -> None:
    dataset = coded_dataset([4, 4, 4])
    for ways, shots, queries, message in (
        (1, 1, 1, "ways must be at least 2"),
        (2, 0, 1, "shots must be at least 1"),
        (2, 1, 0, "queries must be at least 1"),
    ):
        with pytest.raises(ValueError, match=message):
            EpisodeSampler(dataset, ways=ways, shots=shots, queries=queries)
    with pytest.raises(DatasetError, match="rotations must be one of"):
        dataset.with_rotations(3)
    with pytest.raises(DatasetError, match="uint8"):
        ClassDataset(torch.zeros(2, 1, 2, 2), [2], ["a"])


def test_sampling_uses_only_the_generator_given() -> None:
    """Not torch's global stream (a resumed trainer restores that too, so the resume test cannot tell)."""
    sampler = EpisodeSampler(coded_dataset([6] * 8, rotations=4), ways=5, shots=2, queries=2)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = sampler.sample(3, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)
    b = sampler.sample(3, torch.Generator().manual_seed(1))
    assert [t.name for t in a] == [t.name for t in b]
