"""QPT against and before MetaIQA, on the demo's protocol: per seed, the demo's content split, its fair
plain baseline and MetaIQA priors, and its fine-tuning on the held-out types, for five initialisations:

- scratch: the compact CNN at random initialisation, fine-tuned directly;
- baseline: the demo's fair plain-training prior (Adam rate 1e-3, the rate the demo's own search on
  validation contents chooses; `--search-rate` repeats that search);
- metaiqa: the demo's MetaIQA prior;
- qpt: QPT pre-training on the unlabelled reference photos of the seed's training contents (never the
  test contents), degradations drawn from the training types only (the held-out types stay unseen, as for
  the other priors), then a fresh head, fine-tuned;
- qpt+metaiqa: the same QPT backbone as the initialisation of the demo's MetaIQA run (same budget).

Seeds run in parallel processes (`--jobs`), one thread each; each seed's readings are written to
`OUT/seedN/readings.json` and reused by a later run, as are finished priors and QPT backbones.

nice -n 19 python benchmarks/qpt.py --seeds 0 1 2 --qpt-iterations 990 --jobs 3 --out runs/qpt-990 \
    --reuse-demo docs/results/demo-seeds/demo.json     # baseline and MetaIQA as `benchmarks/demo_seeds.py` measured them
(docs/results.md has the commands and tables measured, at 150, 450 and 990 QPT iterations.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalearn.runs import settings_diff
from metalearn_iqa.data.synthetic import default_root, load_synthetic
from metalearn_iqa.evaluation.predict import EvalConfig, evaluate_records
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import IQANet
from metalearn_iqa.protocols.heldout import (
    DemoConfig,
    Split,
    choose_rates,
    evaluate_prior,
    nan_if_undefined,
    split_contents,
    train_or_reuse,
    type_name,
)
from metalearn_iqa.protocols.report import markdown_table, mean_std, write_report
from metalearn_iqa.qpt.backbone import model_from_backbone
from metalearn_iqa.qpt.data import BatchConfig, load_images
from metalearn_iqa.qpt.degradations import ALL_TYPES, DegradationConfig, space_size
from metalearn_iqa.qpt.pretrain import BACKBONE_FILE, QPTConfig, pretrain
from metalearn_iqa.training.finetune import finetune

METHODS = ("scratch", "qpt", "baseline", "metaiqa", "qpt+metaiqa")
HEADLESS = ("scratch", "qpt")
"""No trained quality head before fine-tuning: seen-type and zero-shot readings do not apply (not measured)."""
READINGS = "readings.json"
PARTIAL = "readings.partial.json"


def qpt_config(config: DemoConfig, seed: int, iterations: int) -> QPTConfig:
    """QPT on the demo's network and crop, degradations from the training types only."""
    return QPTConfig(
        iterations=iterations,
        seed=seed,
        device="cpu",
        threads=config.threads,
        batch=BatchConfig(images_per_batch=4, chains_per_image=2, patch=config.crop, region=128),
        degradations=DegradationConfig(types=tuple(t for t in ALL_TYPES if t not in config.held_out)),
        model=config.model,
    )


def finetuned_only(
    model: torch.nn.Module, split: Split, config: DemoConfig, seed: int, store: ImageStore
) -> dict[str, Any]:
    """The held-out-type half of `demo.evaluate_prior` (same fine-tuning config), for headless models."""
    ft = config.finetune_config(seed)
    tuned = {
        kind: nan_if_undefined(
            evaluate_records(finetune(model, split.adapt[kind], ft, store), test, EvalConfig(), store)[0][
                "srocc"
            ]
        )
        for kind, test in split.unseen_test.items()
    }
    return {"seen_srocc": math.nan, "zero_shot": {}, "finetuned": tuned}


def run_seed(
    seed: int,
    rate: float,
    qpt_iterations: int,
    out: Path,
    epochs: float,
    reused: dict[str, Any],
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    """Every method's readings for one seed (its own content split, initialisations and sampling);
    `reused` holds readings of `baseline`/`metaiqa` measured before by the demo's code on this seed."""
    readings_file = out / f"seed{seed}" / READINGS
    if readings_file.is_file():
        return json.loads(readings_file.read_text())
    config = DemoConfig(seeds=(seed,), threads=1, epochs=epochs)
    torch.set_num_threads(1)
    root = default_root(config.synthetic)
    records = load_synthetic(root, config.synthetic)
    store = ImageStore(capacity=len(records) + 16)
    split = split_contents(records, config, seed)
    priors = config.priors(seed, len(split.train), {"baseline": rate})
    folder = out / f"seed{seed}"
    partial = folder / PARTIAL
    readings: dict[str, Any] = json.loads(partial.read_text()) if partial.is_file() else {}
    readings |= reused
    for method in methods:
        if method in readings:
            continue
        t0 = time.perf_counter()
        model: torch.nn.Module
        if method == "scratch":
            torch.manual_seed(seed)
            model = IQANet(config.model)
        elif method in ("baseline", "metaiqa"):
            model = train_or_reuse(
                priors[method], split.train, folder / f"prior-{method}", store, True, False
            )
        elif method == "qpt":
            qpt = qpt_config(config, seed, qpt_iterations)
            backbone = folder / "qpt" / BACKBONE_FILE
            if not backbone.is_file():
                references = sorted({r.reference for r in split.train if r.reference is not None})
                images = load_images([root / "images" / f"{ref}.png" for ref in references])
                source = f"the {len(references)} training contents' reference photos"
                pretrain(qpt, images, folder / "qpt", resume=True, source=source)
            model = model_from_backbone(backbone, seed)
        else:
            meta = dataclasses.replace(priors["metaiqa"], init=str(folder / "qpt" / BACKBONE_FILE))
            model = train_or_reuse(meta, split.train, folder / "prior-qpt-metaiqa", store, True, False)
        train_s = time.perf_counter() - t0
        if method in HEADLESS:
            result = finetuned_only(model, split, config, seed, store)
        else:
            result = evaluate_prior(model, split, config, seed, store)
            result.pop("pred"), result.pop("true")
        result |= {"train_seconds": train_s, "seconds": time.perf_counter() - t0}
        readings[method] = result
        folder.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(readings, indent=2, default=str) + "\n")
        print(
            f"seed {seed} {method}: seen-type SROCC {result['seen_srocc']:.3f}, held-out fine-tuned "
            f"{float(np.mean(list(result['finetuned'].values()))):.3f} (prior {train_s:.0f} s, "
            f"with evaluation {result['seconds']:.0f} s)",
            flush=True,
        )
    readings["passes"] = {m: priors[m].passes(len(split.train)) for m in ("baseline", "metaiqa")}
    text = json.dumps(readings, indent=2, default=str)
    readings_file.write_text(text + "\n")
    return json.loads(text)  # as a later run reads it back (type numbers as strings)


def demo_readings(path: Path, seed: int) -> dict[str, Any]:
    """The baseline's and MetaIQA's readings for `seed` from a demo report (`demo.json` of `metalearn iqa
    demo` or `benchmarks/demo_seeds.py`): the same priors and evaluation this script would compute."""
    report = json.loads(path.read_text())
    ignore = ("seeds", "threads", "workers", "shots", "adapt_steps", "adapt_lr_candidates")  # not the priors
    expected = json.loads(json.dumps(dataclasses.asdict(DemoConfig()), default=str))
    diffs = settings_diff(
        {k: v for k, v in report["config"].items() if k not in ignore},
        {k: v for k, v in expected.items() if k not in ignore},
    )
    if diffs:
        raise SystemExit(
            f"{path}: another demo configuration ({'; '.join(diffs)}); cannot reuse its readings"
        )
    found = {}
    for method in ("baseline", "metaiqa"):
        run = next((r for r in report["runs"][method] if r["seed"] == seed), None)
        if run is None:
            raise SystemExit(f"{path}: no {method} run for seed {seed}")
        found[method] = {k: run[k] for k in ("seen_srocc", "zero_shot", "finetuned")}
        found[method] |= {"train_seconds": math.nan, "seconds": math.nan, "reused": str(path)}
    return found


def summarise(per_seed: list[dict[str, Any]], held_out: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """Per method, over the seeds that measured it."""
    summary = {}
    for method in METHODS:
        rs = [r[method] for r in per_seed if method in r]
        if not rs:
            continue
        tuned = [float(np.mean([r["finetuned"][str(k)] for k in held_out])) for r in rs]
        summary[method] = {
            "seen_srocc": mean_std([r["seen_srocc"] for r in rs]),
            "finetuned": mean_std(tuned),
            "finetuned_per_seed": tuned,
            "per_type_finetuned": {k: mean_std([r["finetuned"][str(k)] for r in rs])[0] for k in held_out},
            "train_seconds": float(np.mean([r["train_seconds"] for r in rs])),
            "seeds": len(rs),
            "reused": rs[0].get("reused"),
        }
    return summary


def _read_seed(folder: Path) -> dict[str, Any]:
    """A seed's readings: finished, else those measured so far."""
    for name in (READINGS, PARTIAL):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    return {}


def _pm(pair: tuple[float, float]) -> str:
    mean, std = pair
    return "undefined" if mean is None or math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"


def render(
    summary: dict[str, dict[str, Any]],
    seeds: list[int],
    held_out: tuple[int, ...],
    qpt_iterations: int,
    passes: int,
) -> str:
    what = {
        "scratch": "none (random init)",
        "baseline": f"plain training, {passes} passes",
        "metaiqa": f"MetaIQA, {passes} passes",
        "qpt": f"QPT, {qpt_iterations} iterations x 16 patches, no labels",
        "qpt+metaiqa": f"QPT ({qpt_iterations} it.), then MetaIQA ({passes} passes)",
    }
    rows = [
        [m, what[m], "n/a" if m in HEADLESS else _pm(s["seen_srocc"]), _pm(s["finetuned"])]
        + [f"{s['per_type_finetuned'][k]:.3f}" for k in held_out]
        + ["reused" if math.isnan(s["train_seconds"]) else f"{s['train_seconds']:.0f}", s["seeds"]]
        for m, s in summary.items()
    ]
    header = ["init", "pre-training", "seen types (held-out contents)", "held-out types, fine-tuned"]
    header += [f"{k} {type_name(k)}" for k in held_out] + ["prior s", "seeds"]
    lines = [
        f"SROCC, mean ± std over seeds {seeds}; per-type columns: fine-tuned, mean over seeds; n/a: no "
        "trained quality head before fine-tuning; prior s: seconds to make the initialisation, per seed."
    ]
    reused = sorted({s["reused"] for s in summary.values() if s.get("reused")})
    if reused:
        lines.append(
            f"baseline and metaiqa: the demo's readings of the same seeds, reused from {', '.join(reused)}."
        )
    for m in ("qpt", "qpt+metaiqa", "metaiqa", "scratch"):
        if (
            m not in summary
            or "baseline" not in summary
            or summary[m]["seeds"] != summary["baseline"]["seeds"]
        ):
            continue
        d = [
            a - b for a, b in zip(summary[m]["finetuned_per_seed"], summary["baseline"]["finetuned_per_seed"])
        ]
        mean, spread = mean_std(d)
        lines.append(
            f"{m} - baseline, held-out fine-tuned: {mean:+.3f} (per seed {', '.join(f'{x:+.3f}' for x in d)}; "
            f"std {spread:.3f})"
        )
    return markdown_table(header, rows) + "\n\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--qpt-iterations", type=int, default=990, help="[990: the priors' passes]")
    parser.add_argument(
        "--epochs", type=float, default=DemoConfig.epochs, help="The priors' budget [demo's]."
    )
    parser.add_argument("--baseline-rate", type=float, default=1e-3)
    parser.add_argument("--search-rate", action="store_true", help="Repeat the demo's rate search first.")
    parser.add_argument("--jobs", type=int, default=3, help="Seeds run at once (one thread each).")
    parser.add_argument("--out", type=Path, default=Path("runs/qpt"))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="[all]")
    parser.add_argument(
        "--reuse-demo",
        type=Path,
        default=None,
        help="Take the baseline's and MetaIQA's readings per seed from this demo.json instead of training "
        "them again (they must come from the same DemoConfig; e.g. docs/results/demo-seeds/demo.json).",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="Tabulate what the seeds' folders hold now; train nothing."
    )
    args = parser.parse_args()
    started = time.perf_counter()
    config = DemoConfig(seeds=tuple(args.seeds), threads=1, epochs=args.epochs)
    rate, search = args.baseline_rate, None
    if args.search_rate and not args.report_only:
        torch.set_num_threads(1)
        records = load_synthetic(default_root(config.synthetic), config.synthetic)
        first = split_contents(records, config, args.seeds[0])
        rates, search = choose_rates(first.train, config, args.out / "rate-search", ImageStore(), resume=True)
        rate = rates["baseline"]
    elif not args.report_only:
        load_synthetic(default_root(config.synthetic), config.synthetic)  # generate once, before the workers
    jobs = [
        (
            seed,
            rate,
            args.qpt_iterations,
            args.out,
            args.epochs,
            demo_readings(args.reuse_demo, seed) if args.reuse_demo else {},
            tuple(args.methods),
        )
        for seed in args.seeds
    ]
    if args.report_only:
        per_seed = [_read_seed(args.out / f"seed{seed}") for seed in args.seeds]
    else:
        with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
            per_seed = pool.starmap(run_seed, jobs)
    summary = summarise(per_seed, config.held_out)
    passes = next((r["passes"]["baseline"] for r in per_seed if "passes" in r), 0)
    table = render(summary, list(args.seeds), config.held_out, args.qpt_iterations, passes)
    qpt = qpt_config(config, args.seeds[0], args.qpt_iterations)
    report = {
        "demo_config": dataclasses.asdict(config),
        "qpt": qpt.to_dict(),
        "degradation_space": space_size(qpt.degradations),
        "baseline_rate": rate,
        "rate_search": search,
        "results": summary,
        "per_seed": dict(zip(args.seeds, per_seed)),
        "seconds": time.perf_counter() - started,
    }
    write_report(report, table, args.out, "qpt")
    print(table)
    print(f"({report['seconds']:.0f} s; outputs in {args.out}/)")


if __name__ == "__main__":
    main()
