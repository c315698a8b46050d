"""Learning a quality prior: the IQA network meta-trained on distortion-specific tasks by any core algorithm."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from metalearn import MetaTrainer, TrainerConfig, mse_loss
from metalearn.algorithms import algorithm_class
from metalearn.algorithms.base import check_optimizer_name
from metalearn.checkpoint import save_json
from metalearn.checks import positive_finite
from metalearn.distributed import on_main
from metalearn.runs import open_run
from metalearn.sampler import TaskSampler
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import IQANet, ModelConfig
from metalearn_iqa.model.weights import build_model, init_label, load_model, read_run_info, save_model
from metalearn_iqa.training.algorithms import ALGORITHM_SETTINGS, build_algorithm, check_honoured
from metalearn_iqa.training.tasks import (
    DistortionTaskSampler,
    MixedTaskSampler,
    PooledBatchSampler,
    TaskConfig,
    check_batch_fits,
)

PRIOR_FILE = "prior.pt"
SUMMARY_FILE = "prior.json"
CHECKPOINT_DIR = "checkpoint"
BUDGET_FIELDS = ("epochs", "iterations", "device", "threads")
"""`PriorConfig` fields a resumed run may change: the budget, and where and how fast it runs."""
SIGNALS = ("query_gradient", "displacement")

PRIOR_TRAINER: dict[str, Any] = {
    "tasks_per_batch": 5,
    "outer_lr": 1e-4,
    "weight_decay": 1e-4,
    "lr_decay": 0.8,
    "decay_inner_lr": True,
    "checkpoint_every": 25,
}
"""Where the prior's outer loop differs from `TrainerConfig`'s defaults (see `PriorConfig`)."""
RECORDED_TRAINER_FIELDS = (
    "tasks_per_batch",
    "outer_lr",
    "outer_optimizer",
    "weight_decay",
    "lr_decay",
    "freeze_batchnorm",
    "seed",
)
"""The trainer fields a prior's resume record (`PriorConfig.settings`) has always held (the trainer records
and compares all of its own too)."""


def prior_trainer(**changes: Any) -> TrainerConfig:
    """The prior's outer loop: `TrainerConfig` with `PRIOR_TRAINER`'s values, then `changes`.

    `PriorConfig(trainer=prior_trainer(outer_lr=1e-3))` changes the outer rate and keeps every other value
    of the paper's; a bare `TrainerConfig(...)` would bring the core's own defaults instead.
    """
    return TrainerConfig(**(PRIOR_TRAINER | changes))


@dataclass
class PriorConfig:
    """Everything that defines a prior run (stored as JSON beside it); the outer loop is `trainer`.

    From the paper (MetaIQA, Sections 3 and 4.2): T = 5 tasks per meta-batch (`trainer.tasks_per_batch`);
    k = 6 inner Adam steps on the support set, then k on the query set (`inner_steps`), Adam betas (0.9,
    0.99) (`training.algorithms.INNER_BETAS`); learning rates x0.8 (`trainer.lr_decay`) every 5 epochs
    (`lr_decay_epochs`), the inner rate too (`trainer.decay_inner_lr`); 100 epochs; weight decay; random
    224 x 224 crops (`task.crop`); the outer step of Eq. (8), plain gradient descent on the averaged task
    signal (`trainer.outer_optimizer="sgd"`).

    Ours, where the paper gives no number or we deviate: `trainer.outer_optimizer="adam"` by default (plain
    SGD's rate would need tuning per backbone and signal, not done on the real databases here), `inner_lr`
    and `trainer.outer_lr` 1e-4 (the authors' code's Adam rate), `trainer.weight_decay` 1e-4, horizontal
    flips, and the epoch: one epoch is as many forward/backward passes of `task.batch_size` crops as the
    training images fill, whatever the algorithm, so that every algorithm at the same `epochs` spends the
    same passes. `iterations`, when set, overrides `epochs` with a number of outer steps. `trainer` starts
    from `prior_trainer()`; its `lr_decay_every` stays 0 (the prior sets it from `lr_decay_epochs`).

    `algorithm` is any name of the core's registry (`metalearn algorithms` lists them): `baseline` is the
    fair ablation (plain training, one optimizer step per batch), `pooled-baseline` one Adam step per
    meta-batch on the pooled images of its tasks (fewer, larger steps at the same passes). `inner_lr`,
    `inner_steps`, `inner_optimizer` ("adam", the paper's, or "sgd"), `signal` (MetaIQA's: "query_gradient",
    the paper's, or "displacement") and `trainer.tasks_per_batch` reach the algorithm as
    `training.algorithms` says, or the config is refused naming the setting and the algorithm:
    learn2learn's algorithms step SGD, so they need `inner_optimizer="sgd"`.

    `init` (ours), when set, is a QPT backbone file (`metalearn_iqa.qpt`) that initialises the backbone
    instead of `model.pretrained`; the head starts fresh.

    `trainer.freeze_batchnorm` (ours; see `TrainerConfig`): distortion-specific tasks feed BatchNorm batches
    of one distortion type, whose training-mode statistics hide how the types' quality levels compare. With
    ImageNet weights, freezing keeps ImageNet's statistics; the small backbone avoids the issue with
    `norm="none"`.
    """

    algorithm: str = "metaiqa"
    epochs: float = 100.0
    iterations: int = 0
    inner_steps: int = 6
    inner_lr: float = 1e-4
    inner_optimizer: str = "adam"
    lr_decay_epochs: float = 5.0
    signal: str = "query_gradient"
    device: str = "auto"
    threads: int = 0
    trainer: TrainerConfig = field(default_factory=prior_trainer)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: str = ""

    def __post_init__(self) -> None:
        if algorithm_class(self.algorithm).needs_class_labels:  # an unknown name is a ValueError here too
            raise ValueError(
                f"algorithm {self.algorithm!r} needs class labels: IQA tasks regress quality scores"
            )
        if self.iterations < 0:
            raise ValueError(f"iterations must be at least 1 (or 0: from epochs), got {self.iterations}")
        positive_finite("epochs", self.epochs)
        positive_finite("lr_decay_epochs", self.lr_decay_epochs)
        positive_finite("inner_lr", self.inner_lr)
        check_optimizer_name(self.inner_optimizer)
        if self.signal not in SIGNALS:
            raise ValueError(f"unknown signal {self.signal!r}: choose 'query_gradient' or 'displacement'")
        self.trainer.validate()
        if self.trainer.lr_decay_every:
            raise ValueError(
                f"trainer.lr_decay_every={self.trainer.lr_decay_every}: a prior decays its rates every "
                "lr_decay_epochs epochs; leave it at 0"
            )
        if self.task.batch_size < 2 and self.model.batchnorm and not self.trainer.freeze_batchnorm:
            raise ValueError(
                f"batch size 1 cannot train the BatchNorm layers of {self.model.describe()} (per-channel "
                "statistics of one image): use --batch-size 2 or more, --freeze-batchnorm, or a model "
                "without BatchNorm (--backbone small --norm none or group)"
            )
        check_honoured(self, ALGORITHM_DEFAULTS)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: the trainer's fields beside the prior's own (the flat form `prior.json` has
        always had; `lr_decay_every`, always 0 here, left out)."""
        data: dict[str, Any] = {}
        for key, value in dataclasses.asdict(self).items():
            if key == "trainer":
                data |= {k: v for k, v in value.items() if k != "lr_decay_every"}
            else:
                data[key] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriorConfig:
        """A config from `to_dict`'s record, from an older one (missing fields take their defaults; the
        trainer's keep `prior_trainer`'s), or with the trainer's fields nested under `trainer`."""
        data = dict(data)
        trainer = dict(data.pop("trainer", None) or {})
        data.pop("lr_decay_every", None)  # a field of early versions, replaced by lr_decay_epochs
        for name in TRAINER_FIELDS & set(data):
            trainer.setdefault(name, data.pop(name))
        task = TaskConfig(**data.pop("task", {}))
        model = ModelConfig(**data.pop("model", {}))
        own = {f.name for f in dataclasses.fields(cls)}
        return cls(
            trainer=prior_trainer(**trainer),
            task=task,
            model=model,
            **{k: v for k, v in data.items() if k in own},
        )

    @property
    def init_label(self) -> str:
        """How the backbone starts, for reports: the QPT backbone file, else "imagenet", "scratch" or a path."""
        return self.init or init_label(self.model.pretrained)

    def settings(self) -> dict[str, Any]:
        """The fields that change the weights, which a resumed run must keep, in the record's historical
        form: all but `BUDGET_FIELDS`, the trainer's `RECORDED_TRAINER_FIELDS` among them; an unset `init`
        and the default `inner_optimizer` and task `composition` are left out, so runs from before they
        existed still resume."""
        record = self.to_dict()
        if record["task"].get("composition") == "type":
            record["task"] = {k: v for k, v in record["task"].items() if k != "composition"}
        keep = [k for k in record if k not in TRAINER_FIELDS and k not in BUDGET_FIELDS]
        keep += RECORDED_TRAINER_FIELDS
        skip = {"init": "", "inner_optimizer": "adam"}
        return {k: record[k] for k in keep if not (k in skip and record[k] == skip[k])}

    # -- compute accounting ---------------------------------------------------------------------------
    @property
    def canonical_algorithm(self) -> str:
        """The registry's own name for `algorithm` (an alias such as `bilevel_adam` resolved)."""
        return algorithm_class(self.algorithm).name

    @property
    def is_plain(self) -> bool:
        """`baseline`: plain training, one pooled batch per outer step (the sampler and budget follow)."""
        return self.canonical_algorithm == "baseline"

    @property
    def tasks_per_iteration(self) -> int:
        return 1 if self.is_plain else self.trainer.tasks_per_batch

    def passes_per_iteration(self) -> int:
        """Forward+backward passes of one `task.batch_size` batch that one outer iteration spends.

        Each count is what the algorithm draws and differentiates (`tests/iqa/test_prior_compute.py`).
        """
        if self.is_plain:
            return 1  # one task of one batch
        return build_algorithm(self).passes_per_task(self.task.batches) * self.trainer.tasks_per_batch

    def passes_per_epoch(self, n_images: int) -> int:
        return max(1, math.ceil(n_images / self.task.batch_size))

    def total_iterations(self, n_images: int) -> int:
        """Outer iterations: `iterations` if set, else `epochs` worth of passes over `n_images`."""
        if self.iterations:
            return self.iterations
        return max(1, round(self.epochs * self.passes_per_epoch(n_images) / self.passes_per_iteration()))

    def decay_every(self, n_images: int) -> int:
        """Outer iterations between two learning-rate decays (`lr_decay_epochs` epochs)."""
        passes = self.lr_decay_epochs * self.passes_per_epoch(n_images)
        return max(1, round(passes / self.passes_per_iteration()))

    def passes(self, n_images: int) -> int:
        """Forward+backward passes the whole run spends."""
        return self.total_iterations(n_images) * self.passes_per_iteration()


TRAINER_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainerConfig))
assert not TRAINER_FIELDS & {f.name for f in dataclasses.fields(PriorConfig)}, (
    "a flat record needs distinct names"
)
ALGORITHM_DEFAULTS = {
    name: PRIOR_TRAINER[name] if name in TRAINER_FIELDS else getattr(PriorConfig, name)
    for name in ALGORITHM_SETTINGS
}
"""Each algorithm setting's default: a value that differs from it is a setting asked for."""


def make_trainer(
    config: PriorConfig,
    records: Sequence[IQARecord],
    store: ImageStore | None = None,
    model: IQANet | None = None,
) -> MetaTrainer:
    """A `MetaTrainer` over distortion-specific tasks of `records`, ready to `fit`."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.trainer.seed)  # network initialisation
    check_batch_fits(config.task.batch_size, len(records))
    sampler: TaskSampler
    if config.is_plain:
        sampler = PooledBatchSampler(records, config.task, store)
    elif config.task.composition == "mixed":
        sampler = MixedTaskSampler(records, config.task, store)
    else:
        sampler = DistortionTaskSampler(records, config.task, store)
    trainer_config = dataclasses.replace(
        config.trainer,
        tasks_per_batch=config.tasks_per_iteration,
        lr_decay_every=config.decay_every(len(records)),
    )
    if model is None:
        model = build_model(
            dataclasses.replace(config.model, pretrained="none") if config.init else config.model
        )
        if config.init:  # the QPT backbone replaces whatever `model.pretrained` would have loaded
            from metalearn_iqa.qpt.backbone import init_backbone

            init_backbone(model, config.init)
    return MetaTrainer(
        model,
        algorithm=build_algorithm(config),
        sampler=sampler,
        loss_fn=mse_loss,
        device=config.device,
        config=trainer_config,
        run_config=config.settings() | {"training_images": len(records)},
    )


def train_prior(
    config: PriorConfig,
    records: Sequence[IQARecord],
    out_dir: str | Path,
    resume: bool = False,
    store: ImageStore | None = None,
    checkpoint_every: int | None = None,
    overwrite: bool = False,
) -> tuple[IQANet, list[dict[str, float]]]:
    """Meta-train a prior on `records`, checkpointing to `out_dir` (resumable); writes `prior.pt` at the end.

    `out_dir` is opened as a run (`metalearn.runs.open_run`): locked while training, a previous run there
    refused unless `resume` continues it (same settings, a budget at least as large) or `overwrite` deletes
    it first. `checkpoint_every`, when given, replaces `config.trainer.checkpoint_every`.
    """
    if checkpoint_every is not None:
        config = dataclasses.replace(
            config, trainer=dataclasses.replace(config.trainer, checkpoint_every=checkpoint_every)
        )
    with open_run(
        out_dir, (PRIOR_FILE, SUMMARY_FILE), (CHECKPOINT_DIR,), resume=resume, overwrite=overwrite
    ) as out:
        return _train_prior(config, records, out, resume, store)


def _train_prior(
    config: PriorConfig,
    records: Sequence[IQARecord],
    out: Path,
    resume: bool,
    store: ImageStore | None,
) -> tuple[IQANet, list[dict[str, float]]]:
    """`train_prior` inside its opened run folder (so no other run's prior is left in it, unless this
    one resumes a finished run, whose `prior.json` says how far it went)."""
    trainer = make_trainer(config, records, store)
    iterations = config.total_iterations(len(records))
    rows = trainer.fit(iterations, checkpoint_dir=out / CHECKPOINT_DIR, resume=resume)
    model = trainer.model
    assert isinstance(model, IQANet)
    summary = {
        "config": config.to_dict(),
        "init": config.init_label,
        "training_images": len(records),
        "iterations": iterations,
        "passes": iterations * config.passes_per_iteration(),
    }
    on_main(_write_prior, model.cpu(), config, summary, out)  # under torchrun: rank 0 writes, all wait
    return model, rows


def _write_prior(model: IQANet, config: PriorConfig, summary: dict, out: Path) -> None:
    save_model(model, config.model, out / PRIOR_FILE, run=summary)  # the prior carries its summary
    save_json(summary, out / SUMMARY_FILE)  # a copy to read without torch; both written atomically


def prior_summary(path: str | Path) -> dict | None:
    """How a prior was trained (`config`, `init`, `iterations`, ...): the record inside its `prior.pt`.

    A prior written before the record existed falls back to the `prior.json` beside it, with a warning;
    None when neither says (a fine-tuned model, a renamed file).
    """
    path = Path(path)
    file = path / PRIOR_FILE if path.is_dir() else path
    summary = read_run_info(file)
    if summary is not None:
        return summary
    side = file.parent / SUMMARY_FILE
    if file.name != PRIOR_FILE or not side.is_file():
        return None
    warnings.warn(
        f"{file}: an older prior without its run record; reading {side} instead (retrain to embed it)",
        stacklevel=2,
    )
    try:
        summary = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def load_prior(path: str | Path) -> IQANet:
    """A prior written by `train_prior` (a `prior.pt`, or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / PRIOR_FILE
    model, _ = load_model(path)
    return model
