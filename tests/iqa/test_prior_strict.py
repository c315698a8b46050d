"""A prior's settings reach its algorithm or are refused by name: every registered algorithm x every setting.

The expectations for the core's algorithms are written out here (`HONOURED_AS`, `BY_CONSTRUCTION`,
`REFUSED`), independently of `training.algorithms`' routing tables; an algorithm registered later is held to
the rule alone (honoured, or a `ValueError` naming the setting and the algorithm).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from metalearn.algorithms import ALGORITHMS, MetaAlgorithm, algorithm_class
from metalearn_iqa.training.prior import PriorConfig, prior_trainer

NAMES = sorted(name for name, cls in ALGORITHMS.items() if not cls.needs_class_labels)
"""Every registered name that regresses, aliases included (ProtoNets classifies: refused, tested below)."""
CHANGED: dict[str, list[Any]] = {
    "inner_lr": [2e-4],
    "inner_steps": [3],
    "inner_optimizer": ["sgd"],
    "signal": ["displacement"],
    "tasks_per_batch": [3, 1],
}
"""A value other than the default for each setting that reaches the algorithm."""
L2L = {"l2l-maml", "l2l-metasgd"}
"""Built only with the learn2learn extra."""
SGD_ONLY = L2L | {"metasgd"}
"""learn2learn's inner loop and Meta-SGD's are plain SGD: their configs say so (the default, Adam, is refused)."""

HONOURED_AS: dict[str, dict[str, tuple[str, Any]]] = {
    "metaiqa": {"inner_lr": ("inner_lr", 2e-4), "inner_steps": ("inner_steps", 3), "signal": ("signal", "displacement")},
    "maml": {"inner_lr": ("inner_lr", 2e-4), "inner_steps": ("inner_steps", 3), "inner_optimizer": ("inner_optimizer", "sgd")},
    "fomaml": {"inner_lr": ("inner_lr", 2e-4), "inner_steps": ("inner_steps", 3), "inner_optimizer": ("inner_optimizer", "sgd")},
    "reptile": {"inner_lr": ("inner_lr", 2e-4), "inner_steps": ("inner_steps", 6), "inner_optimizer": ("inner_optimizer", "sgd")},
    "baseline": {"inner_lr": ("adapt_lr", 2e-4), "inner_steps": ("adapt_steps", 3), "inner_optimizer": ("adapt_optimizer", "sgd")},
    "pooled-baseline": {"inner_lr": ("adapt_lr", 2e-4), "inner_steps": ("adapt_steps", 3), "inner_optimizer": ("adapt_optimizer", "sgd")},
    "l2l-maml": {"inner_lr": ("inner_lr", 2e-4), "inner_steps": ("inner_steps", 3)},
    "l2l-metasgd": {"inner_lr": ("inner_lr", 2e-4), "inner_steps": ("inner_steps", 3)},
    "anil": {"inner_lr": ("inner_lr", 2e-4), "inner_steps": ("inner_steps", 3), "inner_optimizer": ("inner_optimizer", "sgd")},
    "metasgd": {"inner_lr": ("inner_lr", 2e-4), "inner_steps": ("inner_steps", 3)},
}  # fmt: skip
"""Core algorithm -> setting -> (hyper-parameter, value it must hold); Reptile runs 2k steps (both phases)."""
BY_CONSTRUCTION = {
    ("l2l-maml", "inner_optimizer", "sgd"),
    ("l2l-metasgd", "inner_optimizer", "sgd"),
    ("metasgd", "inner_optimizer", "sgd"),
    ("reptile", "signal", "displacement"),
    ("baseline", "tasks_per_batch", 1),
}
"""What an algorithm does without a hyper-parameter for it: accepted (Reptile's signal is its displacement)."""
REFUSED = {
    ("metaiqa", "inner_optimizer"),
    ("maml", "signal"),
    ("fomaml", "signal"),
    ("l2l-maml", "signal"),
    ("l2l-metasgd", "signal"),
    ("anil", "signal"),
    ("metasgd", "signal"),
    ("baseline", "signal"),
    ("pooled-baseline", "signal"),
    ("baseline", "tasks_per_batch"),
}
"""(core algorithm, setting) pairs whose changed value the algorithm cannot honour (other than by construction)."""


def _needs(name: str) -> None:
    if algorithm_class(name).name in L2L:
        pytest.importorskip("learn2learn")


def _config(name: str, **changes: Any) -> PriorConfig:
    base: dict[str, Any] = {"inner_optimizer": "sgd"} if algorithm_class(name).name in SGD_ONLY else {}
    trainer = prior_trainer(**{k: changes.pop(k) for k in list(changes) if k == "tasks_per_batch"})
    return PriorConfig(algorithm=name, trainer=trainer, **(base | changes))


def _built(config: PriorConfig) -> MetaAlgorithm:
    from metalearn_iqa.training.algorithms import build_algorithm

    return build_algorithm(config)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("setting", "value"), [(s, v) for s, values in CHANGED.items() for v in values])
def test_a_changed_setting_is_honoured_or_refused_by_name(name: str, setting: str, value: Any) -> None:
    _needs(name)
    canonical = algorithm_class(name).name
    try:
        config = _config(name, **{setting: value})
    except ValueError as exc:
        message = str(exc)
        assert setting in message and repr(canonical) in message, message
        assert (canonical, setting) in REFUSED or canonical not in HONOURED_AS, message
        return
    by_construction = (canonical, setting, value) in BY_CONSTRUCTION
    assert by_construction or (canonical, setting) not in REFUSED, f"{canonical} accepted {setting}={value!r}"
    built = _built(config)
    recorded = built.config()
    if setting == "tasks_per_batch":
        assert config.tasks_per_iteration == value
    elif by_construction:
        assert not any(value == v for k, v in recorded.items() if k != "name"), (
            recorded
        )  # no parameter to carry it
    elif canonical in HONOURED_AS:
        param, expected = HONOURED_AS[canonical][setting]
        assert recorded[param] == expected, recorded
    else:  # an algorithm registered after this table: the value must reach one of its hyper-parameters
        carried = [v for k, v in recorded.items() if k != "name"]
        assert value in carried or (setting == "inner_steps" and 2 * value in carried), recorded


@pytest.mark.parametrize("name", NAMES)
def test_the_documented_inner_loop_is_what_runs(name: str) -> None:
    """At every default: Adam with betas (0.9, 0.99) wherever the inner loop is the algorithm's choice;
    learn2learn's algorithms, which cannot run it, are refused naming the setting."""
    _needs(name)
    canonical = algorithm_class(name).name
    if canonical in SGD_ONLY:
        with pytest.raises(ValueError, match=rf"'{canonical}' cannot honour inner_optimizer='adam'.*'sgd'"):
            PriorConfig(algorithm=name)
        return
    recorded = _built(PriorConfig(algorithm=name)).config()
    optimizers = [recorded[k] for k in ("inner_optimizer", "adapt_optimizer") if k in recorded]
    betas = [recorded[k] for k in ("betas", "adapt_betas") if k in recorded]
    if canonical == "metaiqa":  # Adam by definition
        assert not optimizers and betas == [[0.9, 0.99]]
    elif canonical in HONOURED_AS:
        assert optimizers == ["adam"] and betas == [[0.9, 0.99]], recorded
    else:
        assert all(o == "adam" for o in optimizers) and all(b == [0.9, 0.99] for b in betas), recorded


def test_the_changed_defaults_table_covers_every_algorithm_setting() -> None:
    from metalearn_iqa.training.algorithms import ALGORITHM_SETTINGS

    assert set(CHANGED) == set(ALGORITHM_SETTINGS)
    defaults = PriorConfig()
    for setting, values in CHANGED.items():
        default = (
            defaults.trainer.tasks_per_batch if setting == "tasks_per_batch" else getattr(defaults, setting)
        )
        assert default not in values


def test_an_old_flat_prior_json_loads_with_the_prior_trainer(tmp_path: Path) -> None:
    """A `prior.json` as written before `trainer` existed (flat, no inner_optimizer) loads to the same run."""
    old = {
        "algorithm": "reptile", "epochs": 3.0, "iterations": 0, "tasks_per_batch": 2, "inner_steps": 2,
        "inner_lr": 0.001, "outer_lr": 0.002, "outer_optimizer": "sgd", "weight_decay": 0.0, "lr_decay": 0.5,
        "lr_decay_epochs": 1.0, "signal": "query_gradient", "freeze_batchnorm": True, "seed": 7,
        "device": "cpu", "threads": 1, "init": "",
        "task": {"crop": 48, "batch_size": 4, "batches": 2, "support_fraction": 0.5},
        "model": {"backbone": "small", "head": "paper", "hidden": 16, "dropout": 0.5, "pretrained": "none",
                  "width": 8, "norm": "none"},
    }  # fmt: skip
    (tmp_path / "prior.json").write_text(json.dumps({"config": old}))
    config = PriorConfig.from_dict(json.loads((tmp_path / "prior.json").read_text())["config"])
    trainer = config.trainer
    assert (trainer.tasks_per_batch, trainer.outer_lr, trainer.outer_optimizer) == (2, 0.002, "sgd")
    assert (trainer.weight_decay, trainer.lr_decay, trainer.freeze_batchnorm, trainer.seed) == (
        0.0,
        0.5,
        True,
        7,
    )
    assert trainer.decay_inner_lr and trainer.lr_decay_every == 0  # what the prior always ran
    assert config.inner_optimizer == "adam" and config.model.width == 8 and config.task.crop == 48
    # the resume record keeps its historical keys, so checkpoints of such a run still resume
    assert config.settings() == {
        k: v for k, v in old.items() if k not in ("epochs", "iterations", "device", "threads", "init")
    }
    assert PriorConfig.from_dict(config.to_dict()) == config
    nested = dict(config.to_dict())
    nested["trainer"] = {k: nested.pop(k) for k in list(nested) if k in dataclasses.asdict(trainer)}
    assert PriorConfig.from_dict(nested) == config


def test_a_trainer_setting_the_prior_derives_is_refused() -> None:
    with pytest.raises(ValueError, match="lr_decay_every=10.*lr_decay_epochs"):
        PriorConfig(trainer=prior_trainer(lr_decay_every=10))


def test_prior_config_and_its_builder_are_importable_from_the_package() -> None:
    import metalearn_iqa
    from metalearn_iqa.training.algorithms import build_algorithm

    assert metalearn_iqa.PriorConfig is PriorConfig and metalearn_iqa.build_algorithm is build_algorithm


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--algorithm", "l2l-maml"], ("'l2l-maml'", "inner_optimizer='adam'", "'sgd'")),
        (["--algorithm", "baseline", "--tasks-per-batch", "3"], ("'baseline'", "tasks_per_batch=3")),
        (["--algorithm", "metaiqa", "--inner-optimizer", "sgd"], ("'metaiqa'", "inner_optimizer='sgd'")),
    ],
)
def test_the_cli_refuses_what_the_algorithm_cannot_honour_before_reading_data(
    extra: list[str], fragments: tuple[str, ...], tmp_path: Path
) -> None:
    from tests.iqa.test_cli import assert_one_line_error, run

    missing = str(tmp_path / "missing")  # the database is never read: the config fails first
    result = run("iqa", "train", "--dataset", "kadid10k", "--root", missing, "--device", "cpu", *extra)
    assert_one_line_error(result, *fragments)


def test_a_classification_only_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="^algorithm 'protonet' needs class labels: IQA tasks regress"):
        PriorConfig(algorithm="protonet")
