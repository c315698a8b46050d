"""The CLI's option groups: each hands its command one typed value, and no command takes `**kwargs`."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import click
from click.testing import CliRunner

from metalearn_iqa.cli import iqa
from metalearn_iqa.cli.options import ModelOptions, option_group
from metalearn_iqa.cli.training_options import PriorOptions


@dataclass(frozen=True)
class Pair:
    first: int
    second: str


def test_option_group_builds_its_value_and_keeps_the_option_order() -> None:
    seen = []
    pair_options = option_group(
        "pair", Pair, [click.option("--first", type=int, default=1), click.option("--second", default="b")]
    )

    @click.command()
    @click.option("--before", default="x")
    @pair_options
    @click.option("--after", default="y")
    def command(before: str, pair: Pair, after: str) -> None:
        seen.append((before, pair, after))

    result = CliRunner().invoke(command, ["--second", "s", "--first", "3", "--after", "z"])
    assert result.exit_code == 0, result.output
    assert seen == [("x", Pair(3, "s"), "z")]
    assert [p.name for p in command.params] == ["before", "first", "second", "after"]


def _command(name: str) -> click.Command:
    """A subcommand of `metalearn iqa`, imported (the group loads its commands lazily)."""
    command = iqa.get_command(click.Context(iqa), name)
    assert command is not None, name
    return command


def test_no_command_takes_loose_keyword_arguments() -> None:
    names = iqa.list_commands(click.Context(iqa))
    assert "train" in names and "demo" in names
    for name in names:
        command = _command(name)
        assert command.callback is not None
        callback = inspect.unwrap(command.callback)
        kinds = {p.kind for p in inspect.signature(callback).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, name


def test_prior_options_reach_the_prior_config() -> None:
    """Every meta-training option lands in its PriorConfig field (two swapped fields would parse fine)."""
    train = _command("train")
    args = "--backbone small --width 8 --algorithm reptile --epochs 2.5 --tasks-per-batch 3 --inner-steps 4 "
    args += "--inner-lr 0.01 --inner-optimizer sgd --outer-lr 0.02 --outer-optimizer sgd --freeze-batchnorm --train-crop 48 "
    args += "--batch-size 5 --seed 7 --device cpu --iterations 9"
    context = train.make_context("train", ["--dataset", "synthetic", *args.split()])
    options = {k: v for k, v in context.params.items() if k in PriorOptions.__dataclass_fields__}
    model = ModelOptions(**{k: context.params[k] for k in ModelOptions.__dataclass_fields__})
    config = PriorOptions(**options, model=model).config()  # `options` holds --init (unset here)
    assert (config.algorithm, config.epochs, config.iterations) == ("reptile", 2.5, 9)
    trainer = config.trainer
    assert (trainer.tasks_per_batch, config.inner_steps, config.inner_lr, trainer.outer_lr) == (
        3,
        4,
        0.01,
        0.02,
    )
    assert (config.inner_optimizer, trainer.outer_optimizer, trainer.freeze_batchnorm) == ("sgd", "sgd", True)
    assert (trainer.seed, config.device) == (7, "cpu")
    assert (config.task.crop, config.task.batch_size, config.task.batches) == (48, 5, 4)
    assert (config.model.backbone, config.model.width, config.model.pretrained) == ("small", 8, "none")
