"""Gradient maps (paper, Section 4.5): where in the image the predicted quality score is most sensitive."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor, nn

__all__ = ["gradient_map", "save_gradient_map"]


def gradient_map(model: nn.Module, image_tensor: Tensor) -> Tensor:
    """|d score / d pixel|, max over channels, scaled to [0, 1]; returns (H, W) on the CPU.

    Runs the model in eval mode (its previous mode is restored) and differentiates with respect to the
    input only, so parameters and their ``.grad`` are left untouched.
    """
    if image_tensor.dim() == 3:
        image_tensor = image_tensor.unsqueeze(0)
    if image_tensor.dim() != 4 or image_tensor.shape[0] != 1:
        raise ValueError(
            f"expected one image of shape (C, H, W) or (1, C, H, W), got {tuple(image_tensor.shape)}"
        )
    device = next(model.parameters()).device
    x = image_tensor.detach().to(device=device, dtype=torch.float32).requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            score = model(x).sum()
            (grad,) = torch.autograd.grad(score, x)
    finally:
        model.train(was_training)
    saliency = grad.abs().amax(dim=1)[0].cpu()
    peak = saliency.max()
    return saliency / peak if peak > 0 else torch.zeros_like(saliency)


def _heat_array(grad_map: Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The map as a float array in [0, 1], resized to ``size`` (width, height) to align with the image."""
    arr = np.asarray(grad_map.detach().cpu() if isinstance(grad_map, Tensor) else grad_map, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"grad_map must be 2-D (H, W), got shape {arr.shape}")
    if (arr.shape[1], arr.shape[0]) != size:
        arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BILINEAR))
    return np.clip(arr, 0.0, 1.0)


def save_gradient_map(
    image: Image.Image, grad_map: Tensor | np.ndarray, out_path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Write a PNG with three panels: the image, its gradient heat map, and the heat map overlaid."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.asarray(image.convert("RGB"))
    heat = _heat_array(grad_map, image.size)
    fig = Figure(figsize=(12, 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    axes[0].imshow(rgb)
    axes[0].set_title("image")
    im = axes[1].imshow(heat, cmap="jet", vmin=0.0, vmax=1.0)
    axes[1].set_title("|d score / d pixel|")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(rgb)
    axes[2].imshow(heat, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
    axes[2].set_title("overlay")
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out
