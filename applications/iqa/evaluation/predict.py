"""Scoring images with a model and evaluating the scores against MOS (fine-tuning: `training.finetune`).

Test time scores the **whole image** by default: ResNet18 ends in global average pooling, so it takes any
size, and a crop would hide distortions outside it. Crops (`EvalConfig.crop`, centre or five crops) are an
explicit option. Images larger than a typical display are first downscaled (anti-aliased, aspect kept) to
`max_side`, the size at which people judge them; `DISPLAY_SIDE` gives each database's default:

- synthetic databases (tid2013, kadid10k, synthetic): native size (None). Their images are already at
  display size (512x384 and smaller), and resampling would change the very distortions being scored.
- livec: native (its images are 500x500 as released).
- koniq10k: 512, i.e. 512x384, the authors' own downscaled release, used by most published models.
- cid2013: 800. The captures are 1600x1200; 800x600 is half that, a display size in line with the other
  authentic databases (our choice: the database gives no scoring size).
- user photos (`predict`): `PHOTO_SIDE` = 1024, a typical screen's longest side (our choice), which also
  bounds memory for camera-sized files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.evaluation.metrics import evaluate_scores
from metalearn_iqa.images.decode import image_shape, read_image
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.images.transforms import centre_crop, downscale, downscaled_shape, five_crops, normalise

DISPLAY_SIDE: dict[str, int | None] = {
    "koniq10k": 512,
    "cid2013": 800,
    "livec": None,
    "tid2013": None,
    "kadid10k": None,
    "synthetic": None,
}
PHOTO_SIDE = 1024


def display_side(database: str) -> int | None:
    """The longest side a database's images are scored at (`DISPLAY_SIDE`; None: native size)."""
    return DISPLAY_SIDE.get(database.strip().lower())


@dataclass(frozen=True)
class EvalConfig:
    """Test-time view of an image: the whole image (`crop=None`, default), or `crop` x `crop` crops.

    With a crop, `crops=1` takes the centre crop and `crops=5` the mean over the four corners and the centre.
    `max_side` first downscales images whose longest side exceeds it (None: native size). `batch_size`
    images are scored at a time, taken in order of size, so that views of equal size share a forward pass.
    `workers` > 0 decodes in that many DataLoader worker processes, overlapping the forward passes (then
    up to `workers` + 1 batches of decoded images are held, instead of one).
    """

    crop: int | None = None
    crops: int = 1
    max_side: int | None = None
    batch_size: int = 16
    workers: int = 0

    def __post_init__(self) -> None:
        if self.crops not in (1, 5):
            raise ValueError(f"crops must be 1 (centre) or 5 (corners + centre), got {self.crops}")
        if self.crops == 5 and self.crop is None:
            raise ValueError("five crops need a crop size (--crop N); the whole image is a single view")
        if self.crop is not None and self.crop < 32:
            raise ValueError(f"crop must be at least 32 pixels, got {self.crop}")
        if self.max_side is not None and self.max_side < 32:
            raise ValueError(f"max_side must be at least 32 pixels, got {self.max_side}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be at least 0, got {self.workers}")


def scoring_views(image: Tensor, config: EvalConfig) -> list[Tensor]:
    """The views of one uint8 image that are scored and averaged: the whole (downscaled) image, or its crops."""
    image = downscale(image, config.max_side)
    if config.crop is None:
        return [image]
    return five_crops(image, config.crop) if config.crops == 5 else [centre_crop(image, config.crop)]


def _score_views(model: nn.Module, views: list[list[Tensor]], device: torch.device) -> list[float]:
    """Mean score over each image's views; views of the same size go through the model together.

    Images travel as uint8 (pinned on CUDA) and are normalised on `device`; one synchronisation per batch.
    """
    by_shape: dict[tuple[int, ...], list[tuple[int, Tensor]]] = defaultdict(list)
    for index, image_views in enumerate(views):
        for view in image_views:
            by_shape[tuple(view.shape)].append((index, view))
    outputs, owners = [], []
    for members in by_shape.values():
        batch = torch.stack([view for _, view in members])
        if device.type == "cuda":
            batch = batch.pin_memory()
        outputs.append(model(normalise(batch.to(device, non_blocking=True))).view(-1))
        owners += [index for index, _ in members]
    totals = torch.zeros(len(views), dtype=torch.float64)
    totals.index_add_(0, torch.tensor(owners), torch.cat(outputs).double().cpu())
    counts = torch.tensor([len(v) for v in views], dtype=torch.float64)
    return (totals / counts).tolist()


class _DecodedViews(Dataset):
    """One batch of paths -> their scoring views (run in DataLoader workers by `predict_records`)."""

    def __init__(self, paths: Sequence[str], config: EvalConfig) -> None:
        self.paths, self.config = paths, config

    def __getitem__(self, batch: list[int]) -> list[list[Tensor]] | str:
        try:
            return [scoring_views(read_image(self.paths[i]), self.config) for i in batch]
        except DatasetError as exc:
            return str(exc)


def _size_order(paths: Sequence[str], config: EvalConfig, store: ImageStore | None) -> list[int]:
    """Indices of `paths` by the size they are scored at (the store's known shapes, else header reads),
    so equal sizes share batches."""
    if config.crop is not None:
        return list(range(len(paths)))  # every view is crop x crop
    shape = store.shape if store is not None else image_shape
    return sorted(range(len(paths)), key=lambda i: downscaled_shape(shape(paths[i]), config.max_side))


def _view_batches(
    paths: Sequence[str], config: EvalConfig, store: ImageStore | None
) -> Iterator[tuple[list[int], list[list[Tensor]]]]:
    """(indices, views) per batch of `config.batch_size` images, decoded in-process or in workers."""
    order = _size_order(paths, config, store)
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    if store is not None or not config.workers:
        store = store if store is not None else ImageStore(capacity=config.batch_size)  # one batch at most
        for batch in batches:
            yield batch, [scoring_views(store(paths[i]), config) for i in batch]
        return
    loader = DataLoader(
        _DecodedViews(paths, config),
        sampler=batches,
        batch_size=None,
        num_workers=config.workers,
        prefetch_factor=1,
        generator=torch.Generator(),
    )
    for batch, views in zip(batches, loader):
        if isinstance(views, str):
            raise DatasetError(views)
        yield batch, views


@torch.no_grad()
def predict_records(
    model: nn.Module,
    records: Sequence[IQARecord] | Sequence[str],
    config: EvalConfig = EvalConfig(),
    store: ImageStore | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Predicted quality (higher = better) per record or image path, model in eval mode.

    Without a `store`, at most one batch of decoded full-size images is held at a time (each image is read
    once, and camera photos add up; `workers` decode ahead: one batch each); a caller's store, shared with
    training, keeps its own capacity.
    """
    paths = [r if isinstance(r, str) else r.path for r in records]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores = np.zeros(len(paths), dtype=np.float64)
    try:
        batches = _view_batches(paths, config, store)
        for batch, views in tqdm(
            batches, total=-(-len(paths) // config.batch_size), desc="predict", disable=not progress
        ):
            scores[batch] = _finite(_score_views(model, views, device), [paths[i] for i in batch])
    finally:
        model.train(was_training)
    return scores


def _finite(scores: list[float], paths: Sequence[str]) -> list[float]:
    """The scores, if all finite: a NaN or an infinity means the model is broken, never a quality reading."""
    for score, path in zip(scores, paths):
        if not np.isfinite(score):
            raise ValueError(f"{path}: the model's score is {score} (diverged or overflowing weights?)")
    return scores


def evaluate_records(
    model: nn.Module,
    records: Sequence[IQARecord],
    config: EvalConfig = EvalConfig(),
    store: ImageStore | None = None,
    progress: bool = False,
) -> tuple[dict[str, float | None], np.ndarray]:
    """SROCC, PLCC (raw and logistic), KRCC and RMSE of predictions against normalised MOS."""
    pred = predict_records(model, records, config, store, progress)
    return evaluate_scores(pred, np.asarray([r.score for r in records])), pred
