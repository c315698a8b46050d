"""The demo's comparison over several seeds: mean and spread of held-out SROCC, MetaIQA prior vs baseline.

python benchmarks/demo_seeds.py --seeds 0 1 2 --out runs/demo-seeds    # trains what is missing (resumable)
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from metalearn_iqa.demo import DemoConfig, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/demo-seeds"))
    args = parser.parse_args()

    per_seed = {}
    for seed in args.seeds:
        summary = run_demo(DemoConfig(seed=seed), args.out / f"seed{seed}", resume=True)
        per_seed[seed] = summary["results"]
    algorithms = list(next(iter(per_seed.values())))
    held_out = DemoConfig().held_out
    print(f"\nseeds {args.seeds}: held-out SROCC, mean ± std over seeds (min .. max)")
    print("| algorithm | type | zero-shot | after fine-tuning |")
    print("|---|---|---|---|")
    report = {}
    for algorithm in algorithms:
        for kind in [*held_out, "mean"]:
            cells = []
            for stage in ("zero_shot", "finetuned"):
                if kind == "mean":
                    values = [statistics.fmean(r[algorithm][stage].values()) for r in per_seed.values()]
                else:
                    values = [r[algorithm][stage][kind] for r in per_seed.values()]
                report[f"{algorithm}/{kind}/{stage}"] = values
                cells.append(
                    f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f} "
                    f"({min(values):.3f} .. {max(values):.3f})"
                )
            print(f"| {algorithm} | {kind} | {cells[0]} | {cells[1]} |")
    (args.out / "seeds.json").write_text(json.dumps({"seeds": args.seeds, "values": report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
