"""Learning a quality prior: the IQA network meta-trained on distortion-specific tasks by any core algorithm."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from metalearn import MetaTrainer, TrainerConfig, mse_loss
from metalearn.algorithms import MetaAlgorithm, algorithm_class, get_algorithm, hyper_parameter_names
from metalearn.checkpoint import save_json
from metalearn.distributed import on_main
from metalearn.runs import claim_run_dir, lock_run_dir
from metalearn.sampler import TaskSampler
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import IQANet, ModelConfig
from metalearn_iqa.model.weights import build_model, load_model, read_run_info, save_model
from metalearn_iqa.protocols.report import init_label
from metalearn_iqa.training.tasks import DistortionTaskSampler, PooledBatchSampler, TaskConfig

PRIOR_FILE = "prior.pt"
SUMMARY_FILE = "prior.json"
CHECKPOINT_DIR = "checkpoint"
RUN_FILES = (PRIOR_FILE, SUMMARY_FILE, CHECKPOINT_DIR)
"""What `train_prior` writes into its folder (what `overwrite=True` may delete)."""
BUDGET_FIELDS = ("epochs", "iterations", "device", "threads")
"""`PriorConfig` fields a resumed run may change: the budget, and where and how fast it runs."""


@dataclass
class PriorConfig:
    """Everything that defines a prior run (stored as JSON beside it).

    From the paper (MetaIQA, Sections 3 and 4.2): T = 5 tasks per meta-batch (`tasks_per_batch`); k = 6
    inner Adam steps on the support set, then k on the query set (`inner_steps`); Adam betas (0.9, 0.99);
    learning rates x0.8 (`lr_decay`) every 5 epochs (`lr_decay_epochs`), the inner rate too; 100 epochs;
    weight decay; random 224 x 224 crops (`task.crop`); the outer step of Eq. (8), plain gradient descent on
    the averaged task signal (`outer_optimizer="sgd"`).

    Ours, where the paper gives no number or we deviate: `outer_optimizer="adam"` by default (plain SGD's
    rate would need tuning per backbone and signal, not done on the real databases here), `inner_lr` and `outer_lr`
    1e-4 (the authors' code's Adam rate), `weight_decay` 1e-4, horizontal flips, and the epoch: one epoch
    is as many forward/backward passes of `task.batch_size` crops as the training images fill, whatever
    the algorithm, so that every algorithm at the same `epochs` spends the same passes. `iterations`, when
    set, overrides `epochs` with a number of outer steps.

    `algorithm` is any name of the core's registry (`metalearn algorithms` lists them): `baseline` is the
    fair ablation (plain training, one optimizer step per batch), `pooled-baseline` one Adam step per
    meta-batch on the pooled images of its tasks (fewer, larger steps at the same passes).

    `init` (ours), when set, is a QPT backbone file (`metalearn_iqa.qpt`) that initialises the backbone
    instead of `model.pretrained`; the head starts fresh.

    `freeze_batchnorm` (ours; see `TrainerConfig`): distortion-specific tasks feed BatchNorm batches of one
    distortion type, whose training-mode statistics hide how the types' quality levels compare. With
    ImageNet weights, freezing keeps ImageNet's statistics; the small backbone avoids the issue with
    `norm="none"`.
    """

    algorithm: str = "metaiqa"
    epochs: float = 100.0
    iterations: int = 0
    tasks_per_batch: int = 5
    inner_steps: int = 6
    inner_lr: float = 1e-4
    outer_lr: float = 1e-4
    outer_optimizer: str = "adam"
    weight_decay: float = 1e-4
    lr_decay: float = 0.8
    lr_decay_epochs: float = 5.0
    signal: str = "query_gradient"
    freeze_batchnorm: bool = False
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: str = ""

    def __post_init__(self) -> None:
        algorithm_class(self.algorithm)  # a name the core registry does not know is a ValueError here
        if self.iterations < 0:
            raise ValueError(f"iterations must be at least 1 (or 0: from epochs), got {self.iterations}")
        if self.epochs <= 0 and not self.iterations:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.outer_optimizer not in ("adam", "sgd"):
            raise ValueError(f"outer_optimizer must be 'adam' or 'sgd', got {self.outer_optimizer!r}")
        if self.task.batch_size < 2 and self.model.batchnorm and not self.freeze_batchnorm:
            raise ValueError(
                f"batch size 1 cannot train the BatchNorm layers of {self.model.describe()} (per-channel "
                "statistics of one image): use --batch-size 2 or more, --freeze-batchnorm, or a model "
                "without BatchNorm (--backbone small --norm none or group)"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def init_label(self) -> str:
        """How the backbone starts, for reports: the QPT backbone file, else "imagenet", "scratch" or a path."""
        return self.init or init_label(self.model.pretrained)

    def settings(self) -> dict:
        """The fields that change the weights, which a resumed run must keep (all but `BUDGET_FIELDS`; an
        unset `init` is left out, so runs from before it existed still resume)."""
        return {
            k: v for k, v in self.to_dict().items() if k not in BUDGET_FIELDS and not (k == "init" and not v)
        }

    @classmethod
    def from_dict(cls, data: dict) -> PriorConfig:
        data = dict(data)
        task = TaskConfig(**data.pop("task", {}))
        model = ModelConfig(**data.pop("model", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(task=task, model=model, **{k: v for k, v in data.items() if k in known})

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
        return 1 if self.is_plain else self.tasks_per_batch

    def passes_per_iteration(self) -> int:
        """Forward+backward passes of one `task.batch_size` batch that one outer iteration spends.

        Each count is what the algorithm draws and differentiates (`tests/iqa/test_prior_compute.py`).
        """
        if self.is_plain:
            return 1  # one task of one batch
        return build_algorithm(self).passes_per_task(self.task.batches) * self.tasks_per_batch

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


def build_algorithm(config: PriorConfig) -> MetaAlgorithm:
    """The core algorithm registered as `config.algorithm`, with the IQA inner-loop settings.

    Every algorithm that has them gets the paper's inner loop: Adam (betas 0.9, 0.99) at `inner_lr` for
    `inner_steps` steps (fine-tuning too, for the baselines); Reptile takes 2k steps, as many as MetaIQA's
    support and query phases together. learn2learn's algorithms keep their SGD inner loop.
    """
    lr, k = config.inner_lr, config.inner_steps
    offered: dict[str, object] = {
        "inner_lr": lr,
        "inner_steps": 2 * k if config.canonical_algorithm == "reptile" else k,
        "betas": (0.9, 0.99),
        "inner_optimizer": "adam",
        "signal": config.signal,
        "adapt_lr": lr,
        "adapt_steps": k,
        "adapt_optimizer": "adam",
    }
    accepted = hyper_parameter_names(algorithm_class(config.algorithm))
    return get_algorithm(config.algorithm, **{name: v for name, v in offered.items() if name in accepted})


def make_trainer(
    config: PriorConfig,
    records: Sequence[IQARecord],
    store: ImageStore | None = None,
    model: IQANet | None = None,
) -> MetaTrainer:
    """A `MetaTrainer` over distortion-specific tasks of `records`, ready to `fit`."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # network initialisation
    sampler: TaskSampler
    if config.is_plain:
        sampler = PooledBatchSampler(records, config.task, store)
    else:
        sampler = DistortionTaskSampler(records, config.task, store)
    trainer_config = TrainerConfig(
        tasks_per_batch=config.tasks_per_iteration,
        outer_lr=config.outer_lr,
        outer_optimizer=config.outer_optimizer,  # type: ignore[arg-type]
        weight_decay=config.weight_decay,
        lr_decay=config.lr_decay,
        lr_decay_every=config.decay_every(len(records)),
        decay_inner_lr=True,
        freeze_batchnorm=config.freeze_batchnorm,
        seed=config.seed,
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
    checkpoint_every: int = 25,
    overwrite: bool = False,
) -> tuple[IQANet, list[dict[str, float]]]:
    """Meta-train a prior on `records`, checkpointing to `out_dir` (resumable); writes `prior.pt` at the end.

    `out_dir` is locked while training; a previous run there is refused unless `resume` continues it
    (same settings, a budget at least as large) or `overwrite` deletes it first (see `MetaTrainer.fit`).
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run or replace it")
    out = Path(out_dir)
    with lock_run_dir(out):
        claim_run_dir(out, RUN_FILES, resume=resume, overwrite=overwrite, files=(PRIOR_FILE, SUMMARY_FILE))
        return _train_prior(config, records, out, resume, store, checkpoint_every)


def _train_prior(
    config: PriorConfig,
    records: Sequence[IQARecord],
    out: Path,
    resume: bool,
    store: ImageStore | None,
    checkpoint_every: int,
) -> tuple[IQANet, list[dict[str, float]]]:
    """`train_prior` inside its claimed, locked folder (so no other run's prior is left in it, unless this
    one resumes a finished run, whose `prior.json` says how far it went)."""
    trainer = make_trainer(config, records, store)
    trainer.config.checkpoint_every = checkpoint_every
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
