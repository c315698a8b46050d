"""Pixels to network inputs: ImageNet normalisation, downscaling, upscaling to fit a crop, crops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from metalearn_iqa.model.network import IMAGENET_MEAN, IMAGENET_STD

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def normalise(batch_uint8: Tensor, out: Tensor | None = None) -> Tensor:
    """uint8 (B, 3, H, W) -> float, ImageNet-normalised, in place on one float buffer (`out` if given)."""
    out = batch_uint8.float() if out is None else out.copy_(batch_uint8)
    return out.div_(255.0).sub_(_MEAN.to(out.device)).div_(_STD.to(out.device))


def downscaled_shape(shape: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The (height, width) `downscale` gives an image of `shape`."""
    h, w = shape
    if max_side is None or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def downscale(image: Tensor, max_side: int | None) -> Tensor:
    """Shrink (anti-aliased, aspect ratio kept) so the longest side is at most `max_side`; None or small: as is."""
    size = downscaled_shape(tuple(image.shape[-2:]), max_side)  # type: ignore[arg-type]
    if size == tuple(image.shape[-2:]):
        return image
    return TF.resize(image, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def fit_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """The (height, width) `fit` gives an h x w image for crops of `size`."""
    if min(h, w) >= size:
        return h, w
    scale = size / min(h, w)
    return max(size, round(h * scale)), max(size, round(w * scale))


def fit(image: Tensor, size: int) -> Tensor:
    """Upscale (bilinear) an image whose shorter side is below `size`, so any crop fits."""
    h, w = image.shape[-2:]
    if min(h, w) >= size:
        return image
    shape = fit_shape(h, w, size)
    out = F.interpolate(image[None].float(), size=shape, mode="bilinear", align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def random_crop(image: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """A `size` x `size` crop at a position drawn from `generator`."""
    image = fit(image, size)
    top, left = crop_corner(image.shape[-2], image.shape[-1], size, generator)
    return image[:, top : top + size, left : left + size]


def crop_corner(h: int, w: int, size: int, generator: torch.Generator) -> tuple[int, int]:
    """The (top, left) corner of a `size` crop of an h x w image, uniform over the positions (two draws)."""
    top = int(torch.randint(h - size + 1, (1,), generator=generator))
    left = int(torch.randint(w - size + 1, (1,), generator=generator))
    return top, left


def centre_crop(image: Tensor, size: int) -> Tensor:
    """The central `size` x `size` crop (test time: deterministic, no rescaling that would alter distortions)."""
    image = fit(image, size)
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top : top + size, left : left + size]


def five_crops(image: Tensor, size: int) -> list[Tensor]:
    """Four corner crops and the centre crop (test time, averaged for a steadier score)."""
    image = fit(image, size)
    h, w = image.shape[-2:]
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    return [image[:, t : t + size, lft : lft + size] for t, lft in corners] + [centre_crop(image, size)]
