"""Learning a quality prior: the IQA network meta-trained on distortion-specific tasks by any core algorithm."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from metalearn import MetaTrainer, TrainerConfig, mse_loss
from metalearn.algorithms import MAML, MetaAlgorithm, MetaIQA, Pretrain, Reptile
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.images import ImageStore
from metalearn_iqa.model import IQANet, ModelConfig, build_model, load_model, save_model
from metalearn_iqa.tasks import DistortionTaskSampler, TaskConfig

ALGORITHMS = ("metaiqa", "maml", "fomaml", "reptile", "baseline")
PRIOR_FILE = "prior.pt"
SUMMARY_FILE = "prior.json"


@dataclass
class PriorConfig:
    """Everything that defines a prior run (stored as JSON beside it).

    Defaults follow the MetaIQA paper where it gives numbers (T = 5 tasks, k = 6 Adam steps with betas
    0.9/0.99, learning rates x0.8 every 5 epochs, 224 crops); `iterations` counts outer steps. `baseline` is
    the paper's ablation: plain Adam on the same tasks' images pooled, with the same images per iteration.
    """

    algorithm: str = "metaiqa"
    iterations: int = 500
    tasks_per_batch: int = 5
    inner_steps: int = 6
    inner_lr: float = 1e-4
    outer_lr: float = 1e-4
    weight_decay: float = 1e-4
    lr_decay: float = 0.8
    lr_decay_every: int = 100
    signal: str = "query_gradient"
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}: choose one of {', '.join(ALGORITHMS)}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PriorConfig:
        data = dict(data)
        task = TaskConfig(**data.pop("task", {}))
        model = ModelConfig(**data.pop("model", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(task=task, model=model, **{k: v for k, v in data.items() if k in known})


def build_algorithm(config: PriorConfig) -> MetaAlgorithm:
    """The core algorithm for `config.algorithm`, with the IQA inner-loop settings."""
    name, lr, k = config.algorithm, config.inner_lr, config.inner_steps
    if name == "metaiqa":
        return MetaIQA(inner_lr=lr, inner_steps=k, signal=config.signal)  # type: ignore[arg-type]
    if name == "maml":
        return MAML(inner_lr=lr, inner_steps=k, inner_optimizer="adam", betas=(0.9, 0.99))
    if name == "fomaml":
        return MAML(inner_lr=lr, inner_steps=k, first_order=True, inner_optimizer="adam", betas=(0.9, 0.99))
    if name == "reptile":
        return Reptile(inner_lr=lr, inner_steps=k, inner_optimizer="adam")
    return Pretrain(adapt_lr=lr, adapt_steps=k, adapt_optimizer="adam")


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
    sampler = DistortionTaskSampler(records, config.task, store)
    trainer_config = TrainerConfig(
        tasks_per_batch=config.tasks_per_batch,
        outer_lr=config.outer_lr,
        weight_decay=config.weight_decay,
        lr_decay=config.lr_decay,
        lr_decay_every=config.lr_decay_every,
        seed=config.seed,
    )
    return MetaTrainer(
        model or build_model(config.model),
        algorithm=build_algorithm(config),
        sampler=sampler,
        loss_fn=mse_loss,
        device=config.device,
        config=trainer_config,
    )


def train_prior(
    config: PriorConfig,
    records: Sequence[IQARecord],
    out_dir: str | Path,
    resume: bool = False,
    store: ImageStore | None = None,
    checkpoint_every: int = 25,
) -> tuple[IQANet, list[dict[str, float]]]:
    """Meta-train a prior on `records`, checkpointing to `out_dir` (resumable); writes `prior.pt` at the end."""
    out = Path(out_dir)
    trainer = make_trainer(config, records, store)
    trainer.config.checkpoint_every = checkpoint_every
    rows = trainer.fit(config.iterations, checkpoint_dir=out / "checkpoint", resume=resume)
    model = trainer.model
    assert isinstance(model, IQANet)
    save_model(model.cpu(), config.model, out / PRIOR_FILE)
    (out / SUMMARY_FILE).write_text(json.dumps({"config": config.to_dict()}, indent=2, default=str) + "\n")
    return model, rows


def load_prior(path: str | Path) -> IQANet:
    """A prior written by `train_prior` (a `prior.pt`, or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / PRIOR_FILE
    model, _ = load_model(path)
    return model
