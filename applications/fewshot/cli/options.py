"""Option values shared by the few-shot commands (no torch: `--help` must stay light)."""

from __future__ import annotations

DATASETS = ("glyphs", "omniglot", "mini-imagenet", "cifar-fs")
"""The registry's names (`metalearn_fewshot.data.registry.DATASETS`; a test keeps them equal)."""
BATCHNORM = ("transductive", "running")
