"""Bad arguments and damaged inputs fail early with messages that say what is wrong."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
from torch import nn

from metalearn import MetaTrainer, Task, TaskError, TrainerConfig, get_algorithm
from metalearn.algorithms import ALGORITHMS, MetaIQA, Reptile
from metalearn.checkpoint import load_json, load_state
from metalearn.examples.sinusoid import SinusoidSampler
from metalearn.sampler import FactoryTaskSampler
from metalearn.task import cycle_batches


def pair(n: int = 3, m: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(n, 1), torch.zeros(n if m is None else m, 1)


def small_trainer(**kw) -> MetaTrainer:
    kw.setdefault("algorithm", "reptile")
    kw.setdefault("sampler", SinusoidSampler(shots=2, query_shots=2))
    return MetaTrainer(nn.Linear(1, 1), device="cpu", config=TrainerConfig(progress=False), **kw)


def test_tasks_per_batch_zero() -> None:
    with pytest.raises(ValueError, match="tasks_per_batch"):
        small_trainer(tasks_per_batch=0)
    with pytest.raises(ValueError, match="tasks_per_batch"):
        TrainerConfig(tasks_per_batch=0).validate()


def test_bad_trainer_config_values() -> None:
    with pytest.raises(ValueError, match="bn_stats"):
        TrainerConfig(bn_stats="median").validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lr_decay_every"):
        TrainerConfig(lr_decay_every=-1).validate()
    with pytest.raises(ValueError, match="iterations"):
        small_trainer().fit(-1)


@pytest.mark.parametrize("which", ["support", "query"])
def test_empty_sets(which: str) -> None:
    empty = (torch.empty(0, 1), torch.empty(0, 1))
    empties: list[Any] = [empty, [], iter([])]  # a batch of no rows, no batches, an exhausted stream
    for bad in empties:
        kwargs = {"support": pair(), "query": pair(), which: bad}
        with pytest.raises(TaskError, match=which):
            Task(**kwargs)


def test_missing_set() -> None:
    with pytest.raises(TaskError, match="support"):
        Task(support=None, query=pair())  # type: ignore[arg-type]


def test_task_error_is_value_error() -> None:
    assert issubclass(TaskError, ValueError)


def test_mismatched_inputs_targets() -> None:
    with pytest.raises(TaskError, match="3 inputs but 2 targets"):
        Task(support=pair(3, 2), query=pair())
    with pytest.raises(TaskError, match="query"):
        Task(support=pair(), query=pair(4, 1), name="t")


def test_malformed_batch_in_streamed_set() -> None:
    task = Task(support=[pair(), pair(2, 5)], query=pair(), name="streamed")
    batches = task.support_batches()
    next(batches)
    with pytest.raises(TaskError, match="streamed.*support.*2 inputs but 5 targets"):
        next(batches)
    with pytest.raises(TaskError, match="expected an \\(inputs, targets\\) tensor pair"):
        next(cycle_batches([torch.zeros(2)], "data"))  # type: ignore[list-item]  # malformed on purpose


def test_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="nope") as info:
        get_algorithm("nope")
    for name in ALGORITHMS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="maml"):
        small_trainer(algorithm="nope")


def test_algorithm_lookup_is_case_insensitive() -> None:
    assert isinstance(get_algorithm("MetaIQA"), MetaIQA)


@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("maml", "inner_optimizer"),
        ("fomaml", "inner_optimizer"),
        ("reptile", "inner_optimizer"),
        ("baseline", "adapt_optimizer"),
        ("pooled-baseline", "adapt_optimizer"),
    ],
)
def test_unknown_inner_optimizer_fails_when_built(name: str, hyper: str) -> None:
    with pytest.raises(ValueError, match="inner optimizer 'rmsprop'"):
        get_algorithm(name, **{hyper: "rmsprop"})


def test_bad_algorithm_hyper_parameters() -> None:
    with pytest.raises(ValueError, match="inner_steps"):
        MetaIQA(inner_steps=0)
    with pytest.raises(ValueError, match="signal"):
        MetaIQA(signal="hessian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inner_steps"):
        Reptile(inner_steps=0)


def test_missing_sampler() -> None:
    with pytest.raises(ValueError, match="sampler"):
        MetaTrainer(nn.Linear(1, 1), "reptile", None, device="cpu")  # type: ignore[arg-type]  # an untyped caller


def test_sampler_returning_wrong_count() -> None:
    class Short:
        def sample(self, n, generator):
            return SinusoidSampler().sample(1, generator)

    with pytest.raises(ValueError, match="returned 1 tasks, expected 2"):
        small_trainer(sampler=Short(), tasks_per_batch=2).step()


def test_sample_zero() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="at least 1"):
        SinusoidSampler().sample(0, g)
    sampler = FactoryTaskSampler([lambda gen: Task(support=pair(), query=pair())])
    with pytest.raises(ValueError, match="at least 1"):
        sampler.sample(0, g)
    with pytest.raises(ValueError, match="at least one"):
        FactoryTaskSampler([])


def test_corrupt_checkpoint_names_file(tmp_path) -> None:
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match="checkpoint.pt"):
        load_state(bad)
    # through the trainer: resume from a damaged checkpoint fails rather than silently restarting
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="checkpoint.pt"):
        small_trainer().fit(2, checkpoint_dir=tmp_path, resume=True)


def test_truncated_checkpoint_names_file(tmp_path) -> None:
    trainer = small_trainer()
    trainer.fit(1, checkpoint_dir=tmp_path)
    data = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="checkpoint.pt"):
        small_trainer().load_checkpoint(tmp_path)


def test_corrupt_and_missing_config(tmp_path) -> None:
    small_trainer().fit(1, checkpoint_dir=tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        small_trainer().load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="config.json"):
        load_json(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_state(tmp_path / "missing.pt")


@pytest.mark.parametrize("name", ["l2l-maml", "l2l-metasgd"])
def test_learn2learn_missing_names_the_extra(name: str, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "learn2learn", None)  # makes `import learn2learn` raise ImportError
    with pytest.raises(ImportError, match="'l2l'"):
        get_algorithm(name)
    from metalearn.algorithms.l2l import L2LMAML, L2LMetaSGD

    with pytest.raises(ImportError, match="learn2learn"):
        (L2LMAML if name == "l2l-maml" else L2LMetaSGD)()


def test_core_import_does_not_need_learn2learn(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "learn2learn", None)
    get_algorithm("maml")
    small_trainer(algorithm="metaiqa")
