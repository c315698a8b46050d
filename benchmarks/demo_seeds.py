"""The demo's comparison over more seeds (5 by default): the same protocol and budget as `make demo`.

python benchmarks/demo_seeds.py --seeds 0 1 2 3 4 --out runs/demo-seeds    # resumable: reuses finished priors
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("runs/demo-seeds"))
    args = parser.parse_args()
    report = run_demo(DemoConfig(seeds=tuple(args.seeds)), args.out, resume=True)
    print(report["table"])


if __name__ == "__main__":
    main()
