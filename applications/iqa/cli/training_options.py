"""The option groups of the training commands: meta-training (with model and --init), fine-tuning, loading."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from metalearn.algorithms import ALGORITHMS
from metalearn.cli.types import BATCH, NON_NEGATIVE, POSITIVE
from metalearn_iqa.cli.errors import CLIError, check_device
from metalearn_iqa.cli.files import writable_folder
from metalearn_iqa.cli.options import (
    DEVICE_OPTION,
    INIT_OPTION,
    SEED_OPTION,
    TRAIN_CROP_OPTION,
    WORKERS_OPTION,
    ModelOptions,
    model_options,
    option_group,
)

if TYPE_CHECKING:
    from metalearn_iqa.images.store import ImageStore
    from metalearn_iqa.training.finetune import FinetuneConfig
    from metalearn_iqa.training.prior import PriorConfig

ALGORITHM_HELP = (
    "metaiqa: the paper's bi-level optimisation; maml, fomaml, reptile: other meta-learners; baseline: the "
    "fair ablation, plain training with one Adam step per batch at the same passes; pooled-baseline: the "
    "old variant, one step per meta-batch on its tasks' images pooled; anil: MAML on the head alone; "
    "metasgd: MAML with learned per-weight inner rates; l2l-maml, l2l-metasgd: learn2learn's (the l2l "
    "extra; with --inner-optimizer sgd). Every name of `metalearn algorithms` that regresses is accepted (not "
    "protonet: classification); a setting the algorithm cannot honour is refused."
)

REGRESSING = [name for name, cls in ALGORITHMS.items() if not cls.needs_class_labels]
"""The registry's names that apply to a regression target (ProtoNets classifies)."""


@dataclass(frozen=True)
class PriorOptions:
    """Meta-training hyper-parameters, the network (`model`) and the --init backbone file, as given."""

    algorithm: str
    epochs: float
    iterations: int | None
    tasks_per_batch: int
    inner_steps: int
    inner_lr: float
    inner_optimizer: str
    outer_lr: float
    outer_optimizer: str
    freeze_batchnorm: bool
    task_composition: str
    train_crop: int
    batch_size: int
    seed: int
    device: str
    model: ModelOptions
    init: str | None

    def config(self) -> PriorConfig:
        """The prior run these options describe, the device and the --init file checked first."""
        from metalearn_iqa.training.prior import PriorConfig, prior_trainer
        from metalearn_iqa.training.tasks import TaskConfig

        check_device(self.device)
        init = self._checked_init()
        model = dataclasses.replace(self.model, pretrained=False) if init else self.model
        return PriorConfig(
            algorithm=self.algorithm,
            epochs=self.epochs,
            iterations=self.iterations or 0,
            inner_steps=self.inner_steps,
            inner_lr=self.inner_lr,
            inner_optimizer=self.inner_optimizer,
            device=self.device,
            trainer=prior_trainer(
                tasks_per_batch=self.tasks_per_batch,
                outer_lr=self.outer_lr,
                outer_optimizer=self.outer_optimizer,
                freeze_batchnorm=self.freeze_batchnorm,
                seed=self.seed,
            ),
            task=TaskConfig(
                crop=self.train_crop,
                batch_size=self.batch_size,
                batches=self.inner_steps,
                composition=self.task_composition,
            ),
            model=model.config(),
            init=init,
        )

    def _checked_init(self) -> str:
        """The --init file ("" without one), checked against the network the options describe before any
        work; with it the backbone starts from the file, so no ImageNet weights are fetched."""
        if not self.init:
            return ""
        if self.model.pretrained is not None or self.model.weights:
            flag = "--weights" if self.model.weights else "--pretrained/--no-pretrained"
            raise CLIError(f"use either --init or {flag}, not both")
        from metalearn_iqa.qpt.backbone import check_compatible, read_backbone

        model = dataclasses.replace(self.model, pretrained=False).config()
        check_compatible(read_backbone(self.init)[1], model, self.init)
        return str(self.init)


_prior_group = option_group(
    "prior",
    PriorOptions,
    [
        click.option(
            "--algorithm",
            type=click.Choice(REGRESSING),
            default="metaiqa",
            show_default=True,
            help=ALGORITHM_HELP,
        ),
        click.option(
            "--epochs",
            type=POSITIVE,
            default=100.0,
            show_default=True,
            help="Training budget: one epoch is ceil(images / batch size) forward+backward passes of one "
            "batch, for every algorithm, so equal epochs are equal compute (lr x0.8 every 5 epochs).",
        ),
        click.option(
            "--iterations",
            type=click.IntRange(1),
            default=None,
            help="Override --epochs with this many outer iterations.",
        ),
        click.option("--tasks-per-batch", type=click.IntRange(1), default=5, show_default=True),
        click.option("--inner-steps", type=click.IntRange(1), default=6, show_default=True),
        click.option("--inner-lr", type=POSITIVE, default=1e-4, show_default=True),
        click.option(
            "--inner-optimizer",
            type=click.Choice(["adam", "sgd"]),
            default="adam",
            show_default=True,
            help="Inner loop: Adam with betas (0.9, 0.99), the paper's, or plain SGD (what learn2learn's "
            "algorithms run: they need sgd).",
        ),
        click.option("--outer-lr", type=POSITIVE, default=1e-4, show_default=True),
        click.option(
            "--outer-optimizer",
            type=click.Choice(["adam", "sgd"]),
            default="adam",
            show_default=True,
            help="Outer update: Adam, or plain gradient descent on the mean task signal (the paper's Eq. 8).",
        ),
        click.option(
            "--freeze-batchnorm/--train-batchnorm",
            default=False,
            show_default=True,
            help="Run BatchNorm layers in eval mode while training (one-type task batches hide how types compare).",
        ),
        click.option(
            "--task-composition",
            type=click.Choice(["type", "mixed"]),
            default="type",
            show_default=True,
            help="type: each task one distortion type (the paper's); mixed: each task's support and query "
            "from every training type (keeps first-order MetaIQA from collapsing at k >= 3 or with "
            "BatchNorm when --tasks-per-batch is 1; docs/results.md).",
        ),
        TRAIN_CROP_OPTION,
        click.option(
            "--batch-size",
            type=BATCH,
            default=8,
            show_default=True,
            help="Images per batch (meta-training, and fine-tuning where there is any).",
        ),
        SEED_OPTION,
        DEVICE_OPTION,
        INIT_OPTION,
    ],
)


def prior_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The model options, then the meta-training ones and --init, handed over as `prior: PriorOptions`."""
    return model_options(_prior_group(func))


@dataclass(frozen=True)
class FinetuneOptions:
    """Fine-tuning inside the protocols (lodo, cross), as given."""

    finetune_epochs: int
    finetune_lr: float

    def config(self, prior: PriorConfig) -> FinetuneConfig:
        """Protocol fine-tuning with the prior run's training crop, batch size and seed."""
        from metalearn_iqa.training.finetune import FinetuneConfig

        return FinetuneConfig(
            epochs=self.finetune_epochs,
            lr=self.finetune_lr,
            crop=prior.task.crop,
            batch_size=prior.task.batch_size,
            seed=prior.trainer.seed,
        )


finetune_options = option_group(
    "finetune",
    FinetuneOptions,
    [
        click.option(
            "--finetune-epochs",
            type=click.IntRange(0),
            default=10,
            show_default=True,
            help="Epochs of Adam on the target's training part (lr x0.8 every 5 epochs); 0: no fine-tuning.",
        ),
        click.option("--finetune-lr", type=POSITIVE, default=1e-4, show_default=True),
    ],
)


@dataclass(frozen=True)
class LoaderOptions:
    """How training batches are built: worker processes and the image cache, as given."""

    workers: int
    image_cache: str | None
    image_cache_gb: float

    def store(self) -> ImageStore:
        """The ImageStore these options describe (its cache folder checked writable)."""
        from metalearn_iqa.cli.paths import default_cache_dir
        from metalearn_iqa.images.store import ImageStore

        folder: str | Path | None = self.image_cache
        if folder is None and self.workers:
            folder = default_cache_dir()
        if folder is None:
            return ImageStore(workers=self.workers)
        writable_folder(Path(folder), "--image-cache")
        return ImageStore(
            max_bytes=int(self.image_cache_gb * 1024**3), cache_dir=folder, workers=self.workers
        )


loader_options = option_group(
    "loader",
    LoaderOptions,
    [
        WORKERS_OPTION,
        click.option(
            "--image-cache",
            type=click.Path(file_okay=False),
            default=None,
            help="Folder of decoded images (memory-mapped, shared by workers, reused by later runs) "
            "[with --workers: ~/.cache/metalearn/images; without: in RAM, at most 2 GiB].",
        ),
        click.option(
            "--image-cache-gb",
            type=NON_NEGATIVE,
            default=32.0,
            show_default=True,
            help="Bound on the image cache folder; images past it are decoded from their files each time.",
        ),
    ],
)
