"""Evidence at a larger scale: MetaIQA, the fair plain baseline, FOMAML and Reptile on the embedded database.

A Table-4-style comparison (the paper's ablation: the same network and fine-tuning, priors learned by
different algorithms) on held-out distortion types over seeds, at equal forward/backward passes, with the
demo's protocol (`metalearn_iqa.protocols.demo`) and a longer budget. Every prior's learning rate (the baseline's
Adam rate, a meta-learner's outer rate) is chosen among `--rates` on a validation split of the training
contents, never on the test contents. About an hour on 2 CPU cores with the defaults; resumable (finished
priors are reused).

python benchmarks/iqa_synthetic.py --epochs 15 --seeds 0 1 2 --out runs/iqa-synthetic
"""

from __future__ import annotations

import argparse
from pathlib import Path

from metalearn_iqa.protocols.demo import run_demo
from metalearn_iqa.protocols.heldout import DemoConfig


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=float, default=15.0, help="Prior budget, in epochs of passes.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--algorithms",
        nargs="+",
        default=["metaiqa", "baseline", "fomaml", "reptile"],
        help="Priors to compare.",
    )
    parser.add_argument("--held-out", type=int, nargs="+", default=[3, 10, 13, 19, 22])
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[5e-4, 1e-3, 2e-3],
        help="Candidate rates for the meta-learners' outer Adam (the baseline searches 3e-4, 1e-3, 3e-3).",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/iqa-synthetic"))
    args = parser.parse_args()
    candidates = {a: tuple(args.rates) for a in args.algorithms if a != "baseline"}
    if "baseline" in args.algorithms:
        candidates["baseline"] = (3e-4, 1e-3, 3e-3)
    config = DemoConfig(
        epochs=args.epochs,
        seeds=tuple(args.seeds),
        algorithms=tuple(args.algorithms),
        held_out=tuple(args.held_out),
        rate_candidates=candidates,
    )
    report = run_demo(config, args.out, resume=True)
    print(report["table"])


if __name__ == "__main__":
    main()
