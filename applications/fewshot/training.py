"""Meta-training a few-shot learner: one config, the model and algorithm it implies, one run folder.

    config = FewshotConfig(algorithm="maml", ways=5, shots=1, iterations=2000, inner_lr=0.4)
    model, algorithm = train_run(config, "runs/maml-5w1s")          # resumable: resume=True
    run = load_run("runs/maml-5w1s")                                 # what `evaluate` reads back

The run folder holds `fewshot.json` (the config, the model's shape, the algorithm's settings, the budget),
`weights.pt` (the final model, plus the algorithm's own meta-parameters such as Meta-SGD's rates) and
`checkpoint/` (the trainer's checkpoints and logs, for `--resume`). Training episodes come from the
dataset's training split, test episodes (`evaluate`) from another split: the two never share classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from metalearn import MetaTrainer, TrainerConfig
from metalearn.algorithms import MetaAlgorithm, algorithm_class, get_algorithm, hyper_parameter_names
from metalearn.checkpoint import load_json, load_state, save_json, save_state
from metalearn.checks import positive_finite, whole_number
from metalearn.distributed import on_main
from metalearn.episodes import ClassDataset, EpisodeSampler
from metalearn.runs import open_run
from metalearn_fewshot.data.registry import dataset_info, load_split
from metalearn_fewshot.models import conv4, conv4_embedding

RECORD_FILE = "fewshot.json"
WEIGHTS_FILE = "weights.pt"
CHECKPOINT_DIR = "checkpoint"
HYPER_OPTIONS = ("inner_lr", "inner_steps", "first_order")
"""`FewshotConfig` fields that set an algorithm's hyper-parameter of the same name (None: its default)."""
BatchNormMode = Literal["transductive", "running"]


@dataclass(frozen=True)
class FewshotConfig:
    """Everything that defines a few-shot meta-training run (stored in `fewshot.json`).

    Episodes: `ways`-way `shots`-shot with `query` queries per class at test time; training episodes may
    differ (`train_ways`, `train_shots`, `train_query`; None: the test values), as ProtoNets train with more
    ways (60 on Omniglot). `rotations`: the training classes rotated by 90/180/270 degrees as new classes
    (None: the dataset's convention, 4 for Omniglot). `image_size` None: the dataset's (28 or 84 or 32).

    The algorithm is any registry name; `inner_lr`, `inner_steps` and `first_order` go to it when given
    (an algorithm without that hyper-parameter refuses it, naming both), else its defaults apply.
    `test_inner_steps`: the inner steps `evaluate` takes by default (MAML trains 5 and tests 10; None: as
    in training). `batchnorm`: "transductive" (batch statistics at test time, as MAML's code) or "running"
    (running statistics; training then freezes BatchNorm's statistics as well). Model: the conv-4 of the
    papers with `hidden` filters (64; MAML uses 32 on mini-ImageNet), a linear head of `train_ways` outputs
    for gradient-based methods and the flat embedding for ProtoNets.
    """

    algorithm: str = "protonet"
    dataset: str = "glyphs"
    root: str | None = None
    ways: int = 5
    shots: int = 1
    query: int = 15
    train_ways: int | None = None
    train_shots: int | None = None
    train_query: int | None = None
    iterations: int = 1000
    tasks_per_batch: int = 4
    outer_lr: float = 1e-3
    inner_lr: float | None = None
    inner_steps: int | None = None
    first_order: bool | None = None
    test_inner_steps: int | None = None
    image_size: int | None = None
    rotations: int | None = None
    hidden: int = 64
    batchnorm: BatchNormMode = "transductive"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        info = dataset_info(self.dataset)  # an unknown dataset is a DatasetError (a ValueError) here
        object.__setattr__(self, "dataset", info.name)
        cls = algorithm_class(self.algorithm)  # so is an unknown algorithm
        object.__setattr__(self, "algorithm", cls.name)
        for name in ("ways", "shots", "query", "iterations", "tasks_per_batch", "hidden", "seed"):
            whole_number(name, getattr(self, name), minimum=0 if name == "seed" else 1)
        for name in ("train_ways", "train_shots", "train_query", "inner_steps", "test_inner_steps"):
            if getattr(self, name) is not None:
                whole_number(name, getattr(self, name), minimum=0 if "steps" in name else 1)
        if self.ways < 2 or self.train_ways_ < 2:
            raise ValueError(f"ways must be at least 2, got {self.ways} (train: {self.train_ways_})")
        for name in ("outer_lr", "inner_lr"):
            if getattr(self, name) is not None:
                positive_finite(name, getattr(self, name))
        if self.batchnorm not in ("transductive", "running"):
            raise ValueError(f"batchnorm must be 'transductive' or 'running', got {self.batchnorm!r}")
        if self.rotations is not None and self.rotations not in (1, 2, 4):
            raise ValueError(f"rotations must be 1, 2 or 4, got {self.rotations}")
        if info.needs_root and not self.root:
            raise ValueError(f"dataset {info.name!r} needs --root (the folder that holds it)")
        hyper = set(hyper_parameter_names(cls))
        for name in HYPER_OPTIONS:
            if getattr(self, name) is not None and name not in hyper:
                raise ValueError(
                    f"algorithm {cls.name!r} has no {name}: it takes {', '.join(sorted(hyper)) or 'none'}"
                )
        if self.test_inner_steps is not None and "inner_steps" not in hyper:
            raise ValueError(f"algorithm {cls.name!r} has no inner loop: test_inner_steps does not apply")
        self.algorithm_hyper()  # the algorithm's own checks (a bad rate, no inner step) fail here too

    # -- derived settings --------------------------------------------------------------------------
    @property
    def train_ways_(self) -> int:
        return self.train_ways if self.train_ways is not None else self.ways

    @property
    def train_shots_(self) -> int:
        return self.train_shots if self.train_shots is not None else self.shots

    @property
    def train_query_(self) -> int:
        return self.train_query if self.train_query is not None else self.query

    @property
    def rotations_(self) -> int:
        return self.rotations if self.rotations is not None else dataset_info(self.dataset).rotations

    @property
    def image_size_(self) -> int:
        return self.image_size if self.image_size is not None else dataset_info(self.dataset).image_size

    @property
    def channels(self) -> int:
        return dataset_info(self.dataset).channels

    @property
    def embeds(self) -> bool:
        """True for metric methods (ProtoNets): the model is the embedding, no head."""
        return algorithm_class(self.algorithm).needs_class_labels

    def algorithm_hyper(self) -> dict[str, Any]:
        """The hyper-parameters given to the algorithm (only those set here)."""
        hyper = {name: getattr(self, name) for name in HYPER_OPTIONS if getattr(self, name) is not None}
        get_algorithm(self.algorithm, **hyper)  # refuses a value the algorithm cannot take
        return hyper

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FewshotConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown few-shot settings: {', '.join(unknown)}")
        return cls(**data)


# -- building blocks ----------------------------------------------------------------------------------
def model_spec(config: FewshotConfig) -> dict[str, Any]:
    """The model's shape, as `fewshot.json` records it (`build_model(spec)` rebuilds it)."""
    return {
        "kind": "conv4_embedding" if config.embeds else "conv4",
        "ways": config.train_ways_,
        "channels": config.channels,
        "image_size": config.image_size_,
        "hidden": config.hidden,
    }


def build_model(spec: dict[str, Any], seed: int = 0) -> nn.Module:
    """The conv-4 a `model_spec` describes, initialised from a generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    if spec["kind"] == "conv4_embedding":
        return conv4_embedding(spec["channels"], spec["hidden"], generator)
    if spec["kind"] == "conv4":
        return conv4(spec["ways"], spec["channels"], spec["image_size"], spec["hidden"], generator)
    raise ValueError(f"unknown model kind {spec['kind']!r}")


def training_split(config: FewshotConfig) -> ClassDataset:
    """The dataset's meta-training split, rotated as the config says."""
    train = dataset_info(config.dataset).meta_splits[0]
    return load_split(config.dataset, config.root, train, config.image_size_, config.rotations_)


def training_sampler(config: FewshotConfig, dataset: ClassDataset | None = None) -> EpisodeSampler:
    """Training episodes: `train_ways`-way `train_shots`-shot, `train_query` queries per class."""
    dataset = dataset if dataset is not None else training_split(config)
    return EpisodeSampler(dataset, config.train_ways_, config.train_shots_, config.train_query_)


def make_trainer(config: FewshotConfig, sampler: EpisodeSampler | None = None) -> MetaTrainer:
    """A `MetaTrainer` over `config`'s training episodes, ready to `fit(config.iterations)`."""
    algorithm = get_algorithm(config.algorithm, **config.algorithm_hyper())
    model = build_model(model_spec(config), config.seed)
    trainer_config = TrainerConfig(
        tasks_per_batch=config.tasks_per_batch,
        outer_lr=config.outer_lr,
        freeze_batchnorm=config.batchnorm == "running",
        seed=config.seed,
        checkpoint_every=max(1, config.iterations // 20),
    )
    run = {k: v for k, v in config.to_dict().items() if k not in ("iterations", "device")}
    return MetaTrainer(
        model,
        algorithm=algorithm,
        sampler=sampler if sampler is not None else training_sampler(config),
        loss_fn=F.cross_entropy,
        device=config.device,
        config=trainer_config,
        run_config=run,
    )


def passes_per_iteration(config: FewshotConfig) -> int:
    """Images through a forward and backward pass per outer iteration (what equal-compute runs match):
    per task, the support set once per inner step (once for ProtoNets) plus the query set."""
    support = config.train_ways_ * config.train_shots_
    query = config.train_ways_ * config.train_query_
    hyper = config.algorithm_hyper()
    algorithm = get_algorithm(config.algorithm, **hyper)
    steps = int(getattr(algorithm, "inner_steps", 1))
    return config.tasks_per_batch * (support * max(steps, 1) + query)


# -- a run folder -------------------------------------------------------------------------------------
def train_run(
    config: FewshotConfig,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[nn.Module, MetaAlgorithm]:
    """Meta-train `config` into the run folder `out` (see the module docstring); returns the model and the
    algorithm. The training split is loaded (and refused if too small) before the folder is touched."""
    sampler = training_sampler(config)
    with open_run(
        out, (RECORD_FILE, WEIGHTS_FILE), (CHECKPOINT_DIR,), resume=resume, overwrite=overwrite
    ) as folder:
        trainer = make_trainer(config, sampler)
        trainer.config.progress = progress
        trainer.fit(config.iterations, checkpoint_dir=folder / CHECKPOINT_DIR, resume=resume)
        record = {
            "config": config.to_dict(),
            "model": model_spec(config),
            "algorithm": trainer.algorithm.config(),
            "iterations": config.iterations,
            "passes": config.iterations * passes_per_iteration(config),
            "training_classes": sampler.dataset.num_classes,
        }
        weights = {
            "model": {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
            "algorithm": {
                k: torch.as_tensor(v).detach().cpu() for k, v in trainer.algorithm.state_dict().items()
            },
        }
        on_main(_write_run, folder, record, weights)
        return trainer.model, trainer.algorithm


def _write_run(folder: Path, record: dict[str, Any], weights: dict[str, Any]) -> None:
    save_state(weights, folder / WEIGHTS_FILE)  # the weights first: a record always has its weights
    save_json(record, folder / RECORD_FILE)


@dataclass
class Run:
    """A finished run read back: its config, model (weights loaded) and algorithm (state loaded)."""

    folder: Path
    config: FewshotConfig
    model: nn.Module
    algorithm: MetaAlgorithm
    record: dict[str, Any]


def load_run(folder: str | Path, device: str | torch.device = "cpu") -> Run:
    """The run in `folder` (a `ValueError` naming the file when it is missing, unfinished or damaged)."""
    folder = Path(folder)
    record_path, weights_path = folder / RECORD_FILE, folder / WEIGHTS_FILE
    if not record_path.is_file():
        unfinished = (folder / CHECKPOINT_DIR).is_dir()
        why = "training has not finished (resume it with --resume)" if unfinished else "not a few-shot run"
        raise ValueError(f"{record_path}: missing; {why}")
    record = load_json(record_path)
    if not isinstance(record, dict) or not {"config", "model", "algorithm"} <= set(record):
        raise ValueError(f"{record_path}: not a few-shot run record")
    try:
        config = FewshotConfig.from_dict(record["config"])
        name, hyper = (
            record["algorithm"]["name"],
            {k: v for k, v in record["algorithm"].items() if k != "name"},
        )
        algorithm = get_algorithm(name, **hyper)
        model = build_model(record["model"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{record_path}: malformed run record ({exc})") from None
    weights = load_state(weights_path, map_location="cpu")
    if not isinstance(weights, dict) or "model" not in weights:
        raise ValueError(f"{weights_path}: not a few-shot weights file")
    try:
        model.load_state_dict(weights["model"])
        algorithm.load_state_dict(weights.get("algorithm", {}))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise ValueError(f"{weights_path}: does not fit the model of {record_path} ({first})") from None
    return Run(folder, config, model.to(device), algorithm, record)
