"""The options several commands share, each defined once; an option group hands its command one typed value."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from metalearn_iqa.cli.errors import CLIError
from metalearn_iqa.model.network import BACKBONES, NORMS, ModelConfig

if TYPE_CHECKING:
    from metalearn_iqa.evaluation.predict import EvalConfig

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def option_group(name: str, kind: type, options: list[Decorator]) -> Decorator:
    """Attach `options` (shown in this order) and pass the command one `kind` built from their values as
    `name`; `kind`'s fields are the options' parameter names (and any group value built further out)."""
    fields = [field.name for field in dataclasses.fields(kind)]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {field: kwargs.pop(field) for field in fields}
            return func(*args, **{name: kind(**values)}, **kwargs)

        decorated: Callable[..., Any] = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return decorated

    return decorate


DATASET_OPTION = click.option(
    "--dataset", required=True, help="tid2013, kadid10k, koniq10k, livec, cid2013, synthetic"
)
ROOT_OPTION = click.option(
    "--root", type=click.Path(), default=None, help="The database folder as published."
)
OVERWRITE_OPTION = click.option(
    "--overwrite", is_flag=True, help="Delete the run folder's previous run first (else it is refused)."
)
MODEL_FILE_OPTION = click.option(
    "--checkpoint", type=click.Path(), default=None, help="Model file [newest prior in outputs/]."
)
SEED_OPTION = click.option("--seed", type=int, default=0, show_default=True)
DEVICE_OPTION = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ..."
)
TRAIN_CROP_OPTION = click.option(
    "--train-crop", type=click.IntRange(32), default=224, show_default=True, help="Random training crop."
)
INIT_OPTION = click.option(
    "--init",
    type=click.Path(dir_okay=False),
    default=None,
    help="Start the backbone from a QPT backbone file (`metalearn iqa pretrain --method qpt`); the "
    "quality head starts fresh. Excludes --pretrained/--weights.",
)
WORKERS_OPTION = click.option(
    "--workers",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="DataLoader worker processes that decode and build batches ahead (same results for any N).",
)


@dataclass(frozen=True)
class ModelOptions:
    """Backbone, its initialisation and the head, as given."""

    backbone: str
    width: int | None
    norm: str | None
    head: str
    pretrained: bool | None
    weights: str | None

    def config(self) -> ModelConfig:
        """The network these options describe."""
        if self.backbone == "small" and self.head != "paper":
            raise CLIError("--head authors needs --backbone resnet18 (it reads ImageNet logits)")
        if self.backbone == "resnet18" and (self.width is not None or self.norm is not None):
            raise CLIError("--width and --norm shape the small backbone: add --backbone small")
        small = {k: v for k, v in (("width", self.width), ("norm", self.norm)) if v is not None}
        return ModelConfig(backbone=self.backbone, head=self.head, pretrained=self._init(), **small)  # type: ignore[arg-type]

    def _init(self) -> str:
        """ImageNet for resnet18 and scratch for small, unless --weights/--no-pretrained say otherwise."""
        if self.weights and self.pretrained is not None:
            flag = "--pretrained" if self.pretrained else "--no-pretrained"
            raise CLIError(f"use either {flag} or --weights, not both")
        if self.backbone == "small" and (self.weights or self.pretrained):
            flag = "--weights" if self.weights else "--pretrained"
            raise CLIError(f"{flag} needs --backbone resnet18: the small backbone has no pretrained weights")
        if self.weights:
            return self.weights
        resnet_default = self.pretrained is None and self.backbone == "resnet18"
        return "imagenet" if self.pretrained or resnet_default else "none"


model_options = option_group(
    "model",
    ModelOptions,
    [
        click.option(
            "--backbone",
            type=click.Choice(BACKBONES),
            default="resnet18",
            show_default=True,
            help="resnet18: the paper's (ImageNet init by default); small: a compact CNN (under 1 M "
            "parameters) trained from scratch, for CPU runs.",
        ),
        click.option(
            "--width",
            type=click.IntRange(4),
            default=None,
            help="Small backbone only: channels of its first stage (stages: 1x, 2x, 3x, 4x) [32].",
        ),
        click.option(
            "--norm",
            type=click.Choice(NORMS),
            default=None,
            help="Small backbone only: its normalisation layers [none: one-type task batches defeat batch and group norm].",
        ),
        click.option(
            "--head",
            type=click.Choice(["paper", "authors"]),
            default="paper",
            show_default=True,
            help="paper: GAP->FC->FC(1); authors: their code's 1000->1024->512->1 head (resnet18 only).",
        ),
        click.option(
            "--pretrained/--no-pretrained",
            default=None,
            help="Start the resnet18 backbone from torchvision's ImageNet weights (torch hub cache, else "
            "download), as the paper does [default for resnet18], or from scratch (--no-pretrained: quick "
            "or offline runs) [default for small].",
        ),
        click.option(
            "--weights",
            type=click.Path(),
            default=None,
            help="A resnet18 state_dict file to start the backbone from.",
        ),
    ],
)


@dataclass(frozen=True)
class ViewOptions:
    """How test images are scored: whole by default, crops on request, after an optional downscale."""

    crop: int | None
    crops: str
    max_side: int | None

    def config(self, default_side: int | None) -> EvalConfig:
        """The test view; `--max-side` unset means `default_side`, 0 means native size."""
        from metalearn_iqa.evaluation.predict import EvalConfig

        side = default_side if self.max_side is None else (self.max_side or None)
        return EvalConfig(crop=self.crop, crops=int(self.crops), max_side=side)


view_options = option_group(
    "view",
    ViewOptions,
    [
        click.option(
            "--crop",
            type=click.IntRange(32),
            default=None,
            help="Score N x N crops instead of the whole image [whole image].",
        ),
        click.option(
            "--crops",
            type=click.Choice(["1", "5"]),
            default="1",
            show_default=True,
            help="With --crop: the centre crop, or the mean over the four corner and centre crops.",
        ),
        click.option(
            "--max-side",
            type=click.IntRange(0),
            default=None,
            help="First downscale (anti-aliased) images whose longest side exceeds N; 0: native size "
            "[databases: their display size (koniq10k 512, cid2013 800, others native); predict: 1024].",
        ),
    ],
)
