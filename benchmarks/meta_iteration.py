"""Seconds and peak memory per meta-iteration: our algorithms against the peers, on the same maths.

Two regimes, each measured in one run with the peers interleaved (peer A, B, C..., then again; medians):

`--regime iqa` (default): the IQA network (`--backbone small|resnet18`, `--crop` pixels), T tasks of k
support and k query batches of `--batch` crops (random tensors made once: the data path is not measured).
Every peer meta-trains the same network with an outer Adam; printed as a ratio to (e), the same number of
plain Adam steps on one model (a first-order meta-iteration cannot be cheaper than the steps it takes):
- ours (through `MetaTrainer.step`): MetaIQA (k Adam steps on support, k on query), FOMAML and MAML
  (k SGD steps, then the query), Reptile (k SGD steps);
- (a) learn2learn's `MAML(first_order=True)` and `MAML`; (b) `higher` used directly; (c) the naive loop
  of the MetaIQA authors' code (deep-copy the model and build a new Adam for every task); (d) torchopt's
  functional Adam (MetaIQA's maths) and `MetaSGD` (second-order MAML), when the `bench` extra is installed.
Peak memory: the peak resident-set growth (sampled every 0.5 ms) over two meta-iterations of each peer
alone in a subprocess (`torch.cuda.max_memory_allocated` on CUDA), as a ratio to (e)'s.

`--regime sinusoid`: the MAML paper's MLP, 10 tasks of K = 10, one inner SGD step; ours (MAML, FOMAML,
both backends) against learn2learn, `higher` directly and a bare `torch.func` loop, as ratios to
learn2learn.

Before timing, peers that compute the same maths are checked to give the same first meta-gradient. Each
peer is a module of `benchmarks/peers/`; this file lines them up, checks, times and reports.

    python benchmarks/meta_iteration.py --quick   # both regimes (T=3, k=3, crop 32): under two CPU minutes
    python benchmarks/meta_iteration.py --backbone resnet18 --crop 64 --tasks 3 --shots 3
    python benchmarks/meta_iteration.py --regime sinusoid --iterations 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch
from peers.base import Peer, Setting, TaskStream
from peers.func_loop import FuncLoop
from peers.higher_loop import Higher
from peers.l2l import L2L
from peers.memory import in_subprocesses, peak_growth
from peers.naive import Naive
from peers.ours import Ours
from peers.plain import Plain
from peers.torchopt_adam import TorchoptAdam
from peers.torchopt_metasgd import TorchoptMetaSGD

from metalearn.algorithms import MAML, MetaIQA, Reptile


# -- the line-ups ------------------------------------------------------------------------------------
def iqa_peers(
    s: Setting, stream: TaskStream, with_torchopt: bool, only: str | None = None
) -> tuple[list[Peer], dict[str, str]]:
    """The peers (only the one named `only`, if given: each model costs memory), and for each the peer
    whose maths it repeats (for the parity check)."""
    k, lr = s.shots, s.inner_lr
    makers: dict[str, Callable[[], Peer]] = {
        "MetaIQA": lambda: Ours(s, stream, "MetaIQA", MetaIQA(s.adam_lr, k, s.betas), 2 * k),
        "FOMAML": lambda: Ours(s, stream, "FOMAML", MAML(lr, k, first_order=True), k + 1),
        "Reptile": lambda: Ours(s, stream, "Reptile", Reptile(lr, k), k),
        "MAML (2nd order)": lambda: Ours(s, stream, "MAML (2nd order)", MAML(lr, k), k + 1),
        "(a) l2l MAML(first_order)": lambda: L2L(s, stream, True, k),
        "(a) l2l MAML": lambda: L2L(s, stream, False, k),
        "(b) higher FOMAML": lambda: Higher(s, stream, True, k),
        "(b) higher MAML": lambda: Higher(s, stream, False, k),
        "(c) naive deepcopy+Adam": lambda: Naive(s, stream, k),
    }
    same = {
        "(a) l2l MAML(first_order)": "FOMAML",
        "(a) l2l MAML": "MAML (2nd order)",
        "(b) higher FOMAML": "FOMAML",
        "(b) higher MAML": "MAML (2nd order)",
        "(c) naive deepcopy+Adam": "MetaIQA",
    }
    if with_torchopt:
        makers["(d) torchopt functional Adam"] = lambda: TorchoptAdam(s, stream, k)
        makers["(d) torchopt MetaSGD MAML"] = lambda: TorchoptMetaSGD(s, stream, k)
        same |= {"(d) torchopt functional Adam": "MetaIQA", "(d) torchopt MetaSGD MAML": "MAML (2nd order)"}
    steps = {"MetaIQA": 2 * k, "FOMAML": k + 1, "Reptile": k, "MAML (2nd order)": k + 1}
    per_task = {name: steps[same.get(name, name)] for name in makers}
    for n in sorted(set(per_task.values())):
        name = f"(e) plain x{n * s.tasks}"
        makers[name] = lambda n=n: Plain(s, stream, n * s.tasks)  # type: ignore[misc]
        per_task[name] = n
    peers = []
    for name, make in makers.items():
        if only is None or name == only:
            peer = make()
            peer.steps_per_task = per_task[name]
            peers.append(peer)
    return peers, same


def sinusoid_peers(s: Setting, stream: TaskStream) -> tuple[list[Peer], dict[str, str]]:
    lr = s.inner_lr
    peers: list[Peer] = [
        Ours(s, stream, "ours MAML (func)", MAML(lr, 1), 2),
        Ours(s, stream, "ours MAML (higher)", MAML(lr, 1, backend="higher"), 2),
        Ours(s, stream, "ours FOMAML (func)", MAML(lr, 1, first_order=True), 2),
        Ours(s, stream, "ours FOMAML (higher)", MAML(lr, 1, first_order=True, backend="higher"), 2),
        L2L(s, stream, False, 1),
        L2L(s, stream, True, 1),
        Higher(s, stream, False, 1),
        Higher(s, stream, True, 1),
        FuncLoop(s, stream, False),
        FuncLoop(s, stream, True),
    ]
    same = {
        "ours MAML (higher)": "ours MAML (func)",
        "(a) l2l MAML": "ours MAML (func)",
        "(b) higher MAML": "ours MAML (func)",
        "bare torch.func MAML": "ours MAML (func)",
        "ours FOMAML (higher)": "ours FOMAML (func)",
        "(a) l2l MAML(first_order)": "ours FOMAML (func)",
        "(b) higher FOMAML": "ours FOMAML (func)",
        "bare torch.func FOMAML": "ours FOMAML (func)",
    }
    return peers, same


def build_peers(
    s: Setting, with_torchopt: bool, only: str | None = None
) -> tuple[list[Peer], dict[str, str]]:
    stream = TaskStream(s)
    return sinusoid_peers(s, stream) if s.regime == "sinusoid" else iqa_peers(s, stream, with_torchopt, only)


# -- checks and measurements -------------------------------------------------------------------------
def check_parity(peers: list[Peer], same: dict[str, str], s: Setting) -> None:
    """Peers doing the same maths give the same first meta-gradient (all start from the same weights).

    Compared as |a - b| / |b| over all parameters. Adam inner loops get a looser bound: Adam's first steps
    move each weight by about lr * sign(g), so float rounding in a near-zero g (a different but equally
    valid summation order, as in torchopt) changes a weight by up to 2 lr and the difference propagates.
    """
    tasks = TaskStream(s).sample(s.tasks)
    by_name = {p.name: p for p in peers}
    reference = {name: by_name[name].meta_gradient(tasks) for name in set(same.values())}
    worst = []
    for name, ref_name in same.items():
        got = torch.cat([g.reshape(-1) for g in by_name[name].meta_gradient(tasks)])
        ref = torch.cat([g.reshape(-1) for g in reference[ref_name]])
        rel = float((got - ref).norm() / ref.norm())
        bound = 2e-2 if ref_name == "MetaIQA" else 1e-4
        if not rel <= bound:
            raise AssertionError(f"{name} vs {ref_name}: meta-gradients differ by {rel:.2e} (> {bound:.0e})")
        worst.append(f"{name} {rel:.1e}")
    print(
        f"parity with ours (relative difference of the first meta-gradient): {', '.join(worst)}", flush=True
    )


def time_interleaved(peers: list[Peer], repeats: int, iterations: int) -> dict[str, float]:
    """Median seconds per meta-iteration; every repeat runs each peer for `iterations` in turn."""
    for peer in peers:  # warm-up (lazy allocations, first-call dispatch)
        peer.iterate()
    samples: dict[str, list[float]] = {p.name: [] for p in peers}
    for _ in range(repeats):
        for peer in peers:
            start = time.perf_counter()
            for _ in range(iterations):
                peer.iterate()
            samples[peer.name].append((time.perf_counter() - start) / iterations)
    return {name: statistics.median(v) for name, v in samples.items()}


def peak_memory_of(name: str, s: Setting, with_torchopt: bool) -> float:
    """Run in a subprocess: peak memory growth (bytes) over two meta-iterations of one peer alone."""
    (peer,), _ = build_peers(s, with_torchopt, only=name)
    return peak_growth(peer.iterate, 2, s.device)


def measure_memory(names: list[str], args: argparse.Namespace) -> dict[str, float]:
    return {name: peaks[0] for name, peaks in in_subprocesses(__file__, sys.argv[1:], names).items()}


# -- reports -----------------------------------------------------------------------------------------
def iqa_table(peers: list[Peer], seconds: dict[str, float], memory: dict[str, float], s: Setting) -> str:
    plain = {p.steps_per_task: p.name for p in peers if isinstance(p, Plain)}
    lines = [
        "| peer | passes / task | s / meta-iteration | vs (e) same steps | peak memory MiB | memory vs (e) |",
        "|---|---|---|---|---|---|",
    ]
    for p in peers:
        base = plain[p.steps_per_task]
        mem = memory.get(p.name)
        mem_txt = f"{mem / 2**20:.0f} | {mem / memory[base]:.2f}x" if mem is not None else "- | -"
        lines.append(
            f"| {p.name} | {p.steps_per_task} | {seconds[p.name]:.3f} | "
            f"{seconds[p.name] / seconds[base]:.2f}x | {mem_txt} |"
        )
    return "\n".join(lines)


def sinusoid_table(seconds: dict[str, float], iterations_per_100: float = 100) -> str:
    l2l = {"MAML": seconds["(a) l2l MAML"], "FOMAML": seconds["(a) l2l MAML(first_order)"]}
    lines = [
        "| peer | s / 100 meta-iterations | vs learn2learn (same maths) | learn2learn / peer |",
        "|---|---|---|---|",
    ]
    for name, sec in seconds.items():
        ref = l2l["FOMAML"] if "FOMAML" in name or "first_order" in name else l2l["MAML"]
        lines.append(f"| {name} | {sec * iterations_per_100:.2f} | {sec / ref:.2f}x | {ref / sec:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--regime", choices=["iqa", "sinusoid", "both"], default="iqa")
    parser.add_argument("--backbone", choices=["small", "resnet18"], default="small")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--shots", type=int, default=6, help="k: inner steps (support and query batches)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2, help="meta-iterations per timed repeat")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-peer memory subprocesses")
    parser.add_argument("--no-torchopt", action="store_true")
    parser.add_argument("--quick", action="store_true", help="both regimes, small sizes: under two minutes")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:  # smaller tasks, fewer repeats, memory of ours and (e) only: under two CPU minutes
        args.crop, args.tasks, args.shots, args.repeats, args.iterations = 32, 3, 3, 2, 1
    try:
        import torchopt  # noqa: F401

        with_torchopt = not args.no_torchopt
    except ImportError:
        with_torchopt = False
        print("torchopt not installed (pip install -e '.[bench]'): its peers are skipped", file=sys.stderr)

    regimes = ["iqa", "sinusoid"] if args.quick or args.regime == "both" else [args.regime]
    report: dict[str, object] = {"args": vars(args)}
    for regime in regimes:
        s = Setting(regime, args.backbone, args.crop, args.tasks, args.shots, args.batch, args.device)
        if regime == "sinusoid":
            s.tasks, s.inner_lr, s.outer_lr = 10, 0.01, 1e-3
        if args.memory_of is not None:
            if regime == "iqa":
                print(peak_memory_of(args.memory_of, s, with_torchopt))
            continue
        peers, same = build_peers(s, with_torchopt)
        check_parity(peers, same, s)
        if regime == "sinusoid":
            iterations = 10 if args.quick else max(args.iterations, 20)
            seconds = time_interleaved(peers, args.repeats, iterations)
            print(f"\nsinusoid MLP, 10 tasks, K=10, 1 inner step, {args.threads} thread(s), {args.device}")
            print(sinusoid_table(seconds))
            report["sinusoid"] = {"seconds": seconds}
            continue
        seconds = time_interleaved(peers, args.repeats, args.iterations)
        measured = [p.name for p in peers if not args.quick or isinstance(p, Ours | Plain)]
        memory = {} if args.no_memory else measure_memory(measured, args)
        print(
            f"\n{args.backbone}, crop {s.crop}, T={s.tasks} tasks, k={s.shots}, batch {s.batch}, "
            f"{args.threads} thread(s), {args.device}, median of {args.repeats} x {args.iterations}"
        )
        print(iqa_table(peers, seconds, memory, s))
        report["iqa"] = {"seconds": seconds, "memory_bytes": memory}
    if args.json and args.memory_of is None:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
