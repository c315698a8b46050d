"""QPT: the degradation chains, the quality-aware contrastive loss on hand-built embeddings, the algorithm's
checkpointed state, and the backbone file as an initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metalearn.task import Task
from metalearn_iqa.model.network import IQANet, ModelConfig
from metalearn_iqa.model.weights import WeightsError, save_model
from metalearn_iqa.qpt import degradations as deg
from metalearn_iqa.qpt.algorithm import QPT
from metalearn_iqa.qpt.backbone import QPTNet, init_backbone, model_from_backbone, save_backbone
from metalearn_iqa.qpt.data import BatchConfig, ContrastiveSampler
from metalearn_iqa.qpt.loss import info_nce, momentum_loss, paired_views_loss

TINY = ModelConfig(backbone="small", width=4, hidden=8)


def image(seed: int = 0, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3), dtype=np.float32)


# ----------------------------------------------------------------------------------------- degradations


def test_chains_have_1_to_3_distinct_types_at_continuous_levels() -> None:
    config = deg.DegradationConfig()
    rng = np.random.default_rng(0)
    chains = [deg.sample_chain(rng, config) for _ in range(300)]
    assert {len(c) for c in chains} == {1, 2, 3}
    assert all(len({t for t, _ in c}) == len(c) for c in chains)  # distinct types
    levels = [v for c in chains for _, v in c]
    assert min(levels) >= 1 and max(levels) <= 5
    assert sum(v != round(v) for v in levels) == len(levels)  # not only the five fixed levels
    orders = {tuple(t for t, _ in c) for c in chains if len(c) == 2}
    assert any((b, a) in orders for a, b in orders)  # both orders of a pair occur


def test_degradation_is_deterministic_under_a_seed_and_applies_the_chain() -> None:
    config = deg.DegradationConfig(types=(11, 13, 1, 25))  # random types among them
    x = image()
    a, chain_a = deg.degrade(x, np.random.default_rng(5), config)
    b, chain_b = deg.degrade(x, np.random.default_rng(5), config)
    c, chain_c = deg.degrade(x, np.random.default_rng(6), config)
    assert chain_a == chain_b and np.array_equal(a, b)
    assert chain_c != chain_a or not np.array_equal(a, c)
    # The chain applied by hand, one distortion after another at the interpolated parameter, gives the same.
    rng = np.random.default_rng(5)
    chain = deg.sample_chain(rng, config)
    y = x
    for index, level in chain:
        kind = deg.distortion(index)
        y = np.clip(kind.fn(y, deg.parameter_at(kind, level), rng), 0, 1).astype(np.float32)
    assert np.array_equal(y, a)


def test_parameter_interpolates_between_the_fixed_levels() -> None:
    blur = deg.distortion(1)  # sigma 0.1, 0.5, 1, 2, 5
    assert deg.parameter_at(blur, 3.0) == 1.0
    assert deg.parameter_at(blur, 4.5) == pytest.approx(3.5)
    assert deg.parameter_at(deg.distortion(10), 4.5) == 5.0  # JPEG quality 7 .. 4 -> int(5.5)
    with pytest.raises(ValueError, match="level"):
        deg.parameter_at(blur, 5.5)


def test_space_size_is_the_count_of_ordered_chains() -> None:
    # Independent count by enumeration on a small case: 3 types, 1..2 of them, 3 strength steps each.
    config = deg.DegradationConfig(types=(1, 11, 22), max_count=2, steps=3)
    n = {t: deg.distinct_strengths(t, 3) for t in config.types}
    brute = sum(n.values()) + sum(n[a] * n[b] for a in n for b in n if a != b)
    assert deg.space_size(config) == brute
    assert deg.space_size(deg.DegradationConfig()) >= 2 * 10**7  # the paper's figure, all 25 types
    held_out = tuple(t for t in deg.ALL_TYPES if t not in (3, 10, 13))
    assert deg.space_size(deg.DegradationConfig(types=held_out)) >= 2 * 10**7


# ------------------------------------------------------------------------------------------------- loss


def unit(*v: float) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def test_loss_equals_a_hand_computation() -> None:
    # Rows i and i + 2 are partners: (a0, a1 | b0, b1).
    z = torch.tensor([unit(1, 0), unit(0, 1), unit(1, 1), unit(-1, 2)])
    tau = 0.5
    sims = [[sum(p * q for p, q in zip(z[i].tolist(), z[j].tolist())) for j in range(4)] for i in range(4)]
    expected = 0.0
    for i in range(4):
        partner = (i + 2) % 4
        denominator = sum(math.exp(sims[i][j] / tau) for j in range(4) if j != i)
        expected += -math.log(math.exp(sims[i][partner] / tau) / denominator)
    assert paired_views_loss(z, tau).item() == pytest.approx(expected / 4, rel=1e-6)
    # Momentum form: 2 queries, 2 keys, 1 queued key; positive = key i.
    q, k, queue = z[:2], z[2:], torch.tensor([unit(0, -1)])
    cand = torch.cat([k, queue])
    expected = 0.0
    for i in range(2):
        logits = [float(q[i] @ cand[j]) / tau for j in range(3)]
        expected += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    assert momentum_loss(q, k, queue, tau).item() == pytest.approx(expected / 2, rel=1e-6)


def batch(partner: list[float], same_content: list[float]) -> torch.Tensor:
    """Degraded images: 0 (anchor's), 1 (same source, other degradation), 2 (another image)."""
    first = [unit(1, 0, 0), same_content, unit(0, 0, 1)]
    second = [partner, unit(0.2, 1, 0), unit(0.1, 0, 1)]
    return torch.tensor(first + second)


def test_loss_falls_as_positives_align() -> None:
    far = paired_views_loss(batch(unit(0, 1, 1), unit(0, 1, 0)))
    near = paired_views_loss(batch(unit(1, 0.3, 0.3), unit(0, 1, 0)))
    same = paired_views_loss(batch(unit(1, 0, 0), unit(0, 1, 0)))
    assert same < near < far


def test_loss_rises_as_a_same_content_other_degradation_negative_moves_closer() -> None:
    apart = paired_views_loss(batch(unit(1, 0.2, 0), unit(0, 1, 0)))
    closer = paired_views_loss(batch(unit(1, 0.2, 0), unit(1, 1, 0)))
    closest = paired_views_loss(batch(unit(1, 0.2, 0), unit(1, 0.1, 0)))
    assert apart < closer < closest


def test_info_nce_excludes_what_it_is_told_and_checks_the_temperature() -> None:
    a = torch.tensor([unit(1, 0)])
    c = torch.tensor([unit(1, 0), unit(1, 0), unit(0, 1)])
    kept = info_nce(a, c, torch.tensor([0]), 1.0, torch.tensor([[False, True, False]]))
    assert kept.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(a, c, torch.tensor([0]), 0.0)


# ----------------------------------------------------------------------------- sampler and algorithm


def sampler() -> ContrastiveSampler:
    images = [image(i) for i in range(3)]
    return ContrastiveSampler(images, BatchConfig(2, 2, patch=32, region=36), deg.DegradationConfig())


def test_batches_pair_views_and_are_reproducible() -> None:
    views, owner = sampler().draw(torch.Generator().manual_seed(3))
    again, _ = sampler().draw(torch.Generator().manual_seed(3))
    assert views.shape == (8, 3, 32, 32) and torch.equal(views, again)
    assert torch.equal(owner[:4], owner[4:])  # row i and i + 4 come from one degraded image
    assert owner[0] == owner[1] and owner[2] == owner[3]  # two chains per source image


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_step_lowers_the_loss_on_its_batch_and_state_round_trips(momentum: float) -> None:
    torch.manual_seed(0)
    net = QPTNet(TINY, dim=8, hidden=16)
    algorithm = QPT(temperature=0.5, momentum=momentum, queue=8 if momentum else 0)
    task: Task = sampler().sample(1, torch.Generator().manual_seed(0))[0]
    views = task.support[0]  # type: ignore[index]
    before = algorithm.loss(net, views).item()
    result = algorithm.meta_step(net, task, lambda p, t: p.sum())
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.sub_(0.05 * result.gradient[name])
    queue, algorithm.queue = algorithm.queue, None  # the batch's own keys, now queued, are not negatives
    assert algorithm.loss(net, views).item() < before
    algorithm.queue = queue
    state = algorithm.state_dict()
    if momentum:
        queued = state["queue"]
        assert isinstance(queued, torch.Tensor) and queued.shape == (4, 8)
        other = QPT(temperature=0.5, momentum=momentum, queue=8)
        other.load_state_dict(state)
        other.meta_step(net, task, lambda p, t: p.sum())
        algorithm.meta_step(net, task, lambda p, t: p.sum())
        assert torch.equal(other.queue, algorithm.queue)  # type: ignore[arg-type]
    else:
        assert state == {}


# ---------------------------------------------------------------------------------------- backbone file


def test_backbone_file_initialises_an_iqanet_and_refuses_mismatches(tmp_path) -> None:
    torch.manual_seed(0)
    net = QPTNet(TINY, dim=8, hidden=16)
    path = save_backbone(net.backbone, TINY, tmp_path / "backbone.pt", {"method": "qpt"})
    model = model_from_backbone(path, seed=1)
    for (name, a), b in zip(model.backbone.state_dict().items(), net.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2,)
    with pytest.raises(WeightsError, match="a QPT backbone for small .width 4.*network is small .width 8"):
        init_backbone(IQANet(ModelConfig(backbone="small", width=8)), path)
    with pytest.raises(WeightsError, match="but the network is resnet18"):
        init_backbone(IQANet(ModelConfig(backbone="resnet18")), path)
    prior = tmp_path / "prior.pt"
    save_model(IQANet(TINY), TINY, prior)
    with pytest.raises(WeightsError, match="not a QPT backbone file"):
        init_backbone(IQANet(TINY), prior)
