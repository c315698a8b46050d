"""Scoring a trained run the way papers report it: mean accuracy over test episodes +- 1.96 sd / sqrt(E).

result = evaluate_run("runs/maml-5w1s", split="test", episodes=600, steps=10)
result["accuracy"], result["ci95"]          # fractions in 0..1
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metalearn.checkpoint import save_json
from metalearn.episodes import EpisodeSampler, evaluate
from metalearn.trainer import resolve_device
from metalearn_fewshot.data.registry import dataset_info, load_split
from metalearn_fewshot.training import load_run


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    episodes: int = 600,
    ways: int | None = None,
    shots: int | None = None,
    queries: int | None = None,
    steps: int | None = None,
    batchnorm: str | None = None,
    seed: int = 0,
    device: str = "auto",
    json_path: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The run's accuracy on `episodes` episodes of `split` (the run's episode shape unless `ways`, `shots`,
    `queries` say otherwise; `steps` test-time inner steps, default the run's `test_inner_steps`, else its
    training steps; `batchnorm` default the run's). Every setting is checked before the split is loaded.
    Returns (and with `json_path` writes) `accuracy`, `ci95`, `episodes`, `ways`, `shots`, `queries`,
    `split`, `algorithm`, `inner_steps`, `batchnorm`, `seed`, `run`."""
    run = load_run(run_dir, resolve_device(device))
    config = run.config
    info = dataset_info(config.dataset)
    if split not in info.splits:
        raise ValueError(
            f"--split: {config.dataset} has no split {split!r}; choose from {', '.join(info.splits)}"
        )
    ways = ways if ways is not None else config.ways
    head = run.record["model"].get("ways") if run.record["model"]["kind"] == "conv4" else None
    if head is not None and ways > head:
        raise ValueError(f"--ways {ways}: the run's head has {head} outputs (it trained {head}-way)")
    if steps is None:
        steps = config.test_inner_steps if config.test_inner_steps is not None else config.inner_steps
    mode = batchnorm if batchnorm is not None else config.batchnorm
    if mode not in ("transductive", "running"):
        raise ValueError(f"--batchnorm must be transductive or running, got {mode!r}")
    dataset = load_split(config.dataset, config.root, split, config.image_size_, rotations=1)
    sampler = EpisodeSampler(
        dataset,
        ways,
        shots if shots is not None else config.shots,
        queries if queries is not None else config.query,
    )
    result = evaluate(
        run.model,
        run.algorithm,
        sampler,
        episodes=episodes,
        steps=steps,
        batchnorm=mode,  # type: ignore[arg-type]
        seed=seed,
        progress=progress,
    )
    report = {
        "accuracy": result.accuracy,
        "ci95": result.ci95,
        "episodes": result.episodes,
        "ways": result.ways,
        "shots": result.shots,
        "queries": result.queries,
        "split": split,
        "algorithm": config.algorithm,
        "inner_steps": steps,
        "batchnorm": mode,
        "seed": seed,
        "run": str(run_dir),
    }
    if json_path is not None:
        save_json(report, Path(json_path))
    return report
