"""A stand-in model that records the size of every batch it scores, to catch silent test-time cropping."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SizeSpy(nn.Module):
    """Scores an image by its mean (normalised) pixel, so every pixel counts; records each batch's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.shapes.append(tuple(x.shape))
        return self.scale * x.mean(dim=(1, 2, 3))

    def sizes(self) -> set[tuple[int, int]]:
        """The (height, width) of everything scored."""
        return {shape[-2:] for shape in self.shapes}  # type: ignore[misc]
