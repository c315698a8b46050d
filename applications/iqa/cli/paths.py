"""Where IQA runs write by default, and how `predict` finds the newest prior."""

from __future__ import annotations

import os
from pathlib import Path

from metalearn_iqa.training.prior import PRIOR_FILE


def default_output_dir() -> Path:
    """`$METALEARN_OUTPUT`, else `./outputs` (where `demo` and `train` write unless told otherwise)."""
    return Path(os.environ.get("METALEARN_OUTPUT", "outputs"))


def default_cache_dir() -> Path:
    """`$METALEARN_CACHE`, else `$XDG_CACHE_HOME/metalearn/images` (`~/.cache/...`): decoded training images."""
    if "METALEARN_CACHE" in os.environ:
        return Path(os.environ["METALEARN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "metalearn" / "images"


def newest_prior(root: Path | None = None) -> Path | None:
    """The most recently written `prior.pt` below `root`, or None."""
    root = root or default_output_dir()
    if not root.is_dir():
        return None
    priors = sorted(root.rglob(PRIOR_FILE), key=lambda p: p.stat().st_mtime)
    return priors[-1] if priors else None
