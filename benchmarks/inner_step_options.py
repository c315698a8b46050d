"""One inner step (forward, backward, Adam step) of the IQA network under each speed option, interleaved.

What the first-order algorithms (MetaIQA, Reptile) repeat k times per task. Options against the default
(`torch.optim.Adam` as built by `make_optimizer`, contiguous tensors, eager): Adam's `foreach` and `fused`
implementations, `channels_last` memory format (model and crops), and `torch.compile` of the network.
Printed: median milliseconds per step and the ratio to the default, measured in the same run.

    python benchmarks/inner_step_options.py --backbone small --crop 64
    python benchmarks/inner_step_options.py --backbone resnet18 --crop 64 --compile
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from metalearn_iqa.model.network import IQANet, ModelConfig


def variant(args: argparse.Namespace, adam: dict, channels_last: bool, compiled: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    config = ModelConfig(backbone="small", norm="batch") if args.backbone == "small" else ModelConfig()
    model = IQANet(config).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, **adam)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.crop, args.crop, generator=g).to(memory_format=fmt)
    y = torch.rand(args.batch, generator=g)

    def step() -> None:
        loss = torch.nn.functional.mse_loss(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", choices=["small", "resnet18"], default="small")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = {
        "default Adam": ({}, False, False),
        "foreach Adam": ({"foreach": True}, False, False),
        "fused Adam": ({"fused": True}, False, False),
        "channels_last": ({}, True, False),
    }
    if args.compile:
        options["torch.compile"] = ({}, False, True)
    steps = {name: variant(args, *spec) for name, spec in options.items()}
    for step in steps.values():  # warm-up (and compilation)
        for _ in range(2):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            samples[name].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(samples["default Adam"])
    print(f"{args.backbone}, crop {args.crop}, batch {args.batch}, {args.threads} thread(s)")
    print("| option | ms / inner step | vs default |\n|---|---|---|")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {1000 * median:.1f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
