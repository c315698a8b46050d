"""docs/core.md's "Adding an algorithm" and "Adding a task sampler" blocks, run as written."""

from __future__ import annotations

import math
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from metalearn import MetaTrainer, TrainerConfig
from metalearn.algorithms import FOMAML, get_algorithm, registry
from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp
from metalearn.trainer import mse_loss

CORE_DOC = Path(__file__).resolve().parents[2] / "docs" / "core.md"


def run_block(heading: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the block as the module `docs_example` (as a user's file would run) and return its namespace."""
    module = types.ModuleType("docs_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    code = compile(python_block(heading), str(CORE_DOC), "exec", dont_inherit=True)
    exec(code, module.__dict__)
    return module.__dict__


def python_block(heading: str) -> str:
    """The first ```python block under `## heading` in docs/core.md."""
    text = CORE_DOC.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block under '## {heading}'"
    return match.group(1)


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A copy of the registry for the test, so the docs' algorithm is not left registered."""
    table = dict(registry.ALGORITHMS)
    monkeypatch.setattr(registry, "ALGORITHMS", table)
    return table


def test_the_docs_algorithm_trains_in_meta_trainer_and_matches_fomaml(
    own_registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = run_block("Adding an algorithm", monkeypatch)

    trainer: MetaTrainer = namespace["trainer"]
    assert [row["iteration"] for row in namespace["rows"]] == list(range(1, 21))
    assert all(math.isfinite(row["loss"]) for row in namespace["rows"])
    algorithm = trainer.algorithm
    assert own_registry["one-step-fomaml"] is type(algorithm)
    assert algorithm.config() == {"name": "one-step-fomaml", "inner_lr": 0.01}
    with pytest.raises(ValueError, match="inner_lr must be positive"):
        get_algorithm("one-step-fomaml", inner_lr=0.0)

    # an independent oracle: the core's FOMAML with one SGD step computes the same meta-gradient
    model = sinusoid_mlp(hidden=8, seed=3)
    task = SinusoidSampler(shots=5).task(torch.Generator().manual_seed(4))
    ours = algorithm.meta_gradient(model, task, mse_loss)
    core = FOMAML(inner_lr=0.01, inner_steps=1).meta_gradient(model, task, mse_loss)
    assert ours.keys() == core.keys()
    for name in core:
        torch.testing.assert_close(ours[name], core[name])


def test_the_docs_task_sampler_drives_a_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = run_block("Adding a task sampler", monkeypatch)
    sampler = namespace["LinearTasks"](shots=4)

    first = sampler.sample(3, torch.Generator().manual_seed(0))
    again = sampler.sample(3, torch.Generator().manual_seed(0))
    assert [t.name for t in first] == [t.name for t in again]  # all randomness from the generator
    assert len({t.name for t in first}) == 3
    trainer = MetaTrainer(
        sinusoid_mlp(hidden=8),
        algorithm="reptile",
        sampler=sampler,
        device="cpu",
        config=TrainerConfig(tasks_per_batch=2, progress=False),
    )
    assert len(trainer.fit(3)) == 3
