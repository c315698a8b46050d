"""Few-shot meta-iteration speed and memory: our MAML, first-order MAML, ANIL, Meta-SGD and ProtoNets against
learn2learn's, on the same conv-4 and the same episodes, as ratios measured in one run.

The model is `metalearn_fewshot.models.conv4` (`--filters` 3x3 filters, BatchNorm with batch statistics,
ReLU, 2x2 max-pool, four times; a linear head) and `conv4_embedding` for ProtoNets, both from seed 0.
Episodes: `--tasks` N-way 1-shot tasks of `--queries` queries a class, `--channels` x `--size` x `--size`
random images (Omniglot: 1x28x28; mini-ImageNet: `--channels 3 --size 84`), made once: the data path is
not measured. Every peer computes the summed meta-gradient of the same meta-batch (`--steps` inner SGD
steps at `--lr`; the outer optimizer step, the same for all, is left out):

- ours: `maml` (second order), `fomaml`, `anil`, `metasgd`, `protonet` (`meta_steps`, summed as
  `MetaTrainer` does);
- learn2learn: `l2l-maml` (`MAML`), `l2l-fomaml` (`MAML(first_order=True)`), `l2l-anil` (its ANIL recipe:
  the body's features once, `MAML` on the head), `l2l-metasgd` (`MetaSGD`), `l2l-protonet` (its example's
  ProtoNets: prototypes by hand on class-sorted episodes, squared distances through a [query, way, dim]
  difference);
- `plain`: forward and backward of each task's support and query images once, in one batch per task: the
  reference for time and memory.

Parity first: before anything is timed, each of ours and its learn2learn counterpart give the same
meta-gradient on the first two episodes, in float64, to the tests' tolerances (the largest difference is
printed). Timing: one untimed run each, then `--repeats` rounds running every peer in turn; medians, and
each of ours as learn2learn's seconds / ours (> 1: we are faster), in wall-clock and in CPU seconds (on a
shared machine the CPU seconds are the steadier measure of the work; both are printed). Memory, each peer
alone in a subprocess over two meta-iterations (`peers/memory.py`), as ratios to `plain`'s: the peak growth
of the resident set (includes what glibc's allocator keeps cached, so it depends on the order of
allocations) and the peak of live tensor bytes (`torch.profiler`'s memory events; on CUDA the allocator's
peak): what the algorithm itself needs.

    python benchmarks/fewshot.py --threads 1 --repeats 5               # Omniglot-sized, 32 tasks
    python benchmarks/fewshot.py --peers maml,l2l-maml --steps 5 --no-memory
    python benchmarks/fewshot.py --channels 3 --size 84 --filters 32 --tasks 4   # mini-ImageNet-sized
    python benchmarks/fewshot.py --quick                               # tiny sizes: seconds (the test's)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict

import torch
from peers.episodic import L2L_PEERS, Episode, Gradient, Maker, Run, Setting, plain_step
from peers.memory import in_subprocesses, peak_growth, tensor_peak
from torch.nn.functional import cross_entropy

from metalearn.algorithms import get_algorithm
from metalearn.task import Task

PARITY_TASKS = 2
RTOL, ATOL = 1e-9, 1e-12  # float64, as tests/core/test_anil.py and test_metasgd.py compare


def ours(name: str) -> Maker:
    """One of our algorithms through `meta_steps`, the tasks' gradients summed as `MetaTrainer` does."""

    def make(s: Setting, episodes: list[Episode], dtype: torch.dtype) -> Run:
        hyper = {} if name == "protonet" else {"inner_lr": s.lr, "inner_steps": s.steps}
        algorithm = get_algorithm(name, **hyper)
        model = s.embedding(dtype) if name == "protonet" else s.classifier(dtype)
        tasks = [Task(support=(xs, ys), query=(xq, yq)) for xs, ys, xq, yq in episodes]

        def run() -> Gradient:
            total: Gradient = {}
            for result in algorithm.meta_steps(model, tasks, cross_entropy):
                for k, g in result.gradient.items():
                    total[k] = total[k].add_(g) if k in total else g.clone()
            return total

        return run

    return make


OURS = {name: ours(name) for name in ("maml", "fomaml", "anil", "metasgd", "protonet")}
COUNTERPART = {name: f"l2l-{name}" for name in OURS}
PEERS: dict[str, Maker] = {**OURS, **L2L_PEERS, "plain": plain_step}


def check_parity(s: Setting, names: list[str]) -> dict[str, float]:
    """Each of ours against its learn2learn counterpart, float64, first episodes: the largest |difference|."""
    small = Setting(**{**asdict(s), "tasks": min(s.tasks, PARITY_TASKS)})
    episodes = small.episodes(torch.float64)
    worst = {}
    for name in names:
        other = COUNTERPART.get(name)
        if other not in names:
            continue
        got = PEERS[name](small, episodes, torch.float64)()
        expected = PEERS[other](small, episodes, torch.float64)()
        if got.keys() != expected.keys():
            raise AssertionError(
                f"{name} vs {other}: different parameters {sorted(got.keys() ^ expected.keys())}"
            )
        for k in expected:
            try:
                torch.testing.assert_close(got[k], expected[k], rtol=RTOL, atol=ATOL)
            except AssertionError as exc:
                raise AssertionError(f"{name} vs {other}, {k}: {exc}") from None
        worst[name] = max(float((got[k] - expected[k]).abs().max()) for k in expected)
    return worst


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_interleaved(
    runs: dict[str, Run], repeats: int, device: str
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and CPU seconds (this process's, all threads) of each run, `repeats` interleaved rounds."""
    for run in runs.values():  # untimed: first-call costs (allocations, lazy parameters) left out
        run()
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            sync(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def _ratio_to_l2l(seconds: dict[str, float], name: str) -> str:
    other = COUNTERPART.get(name)
    return f"{seconds[other] / seconds[name]:.2f}x" if other in seconds else "-"


def _memory_cells(memory: dict[str, float], name: str) -> str:
    if name not in memory:
        return "- | -"
    return f"{memory[name] / 2**20:.1f} | {memory[name] / memory['plain']:.2f}x"


def table(
    seconds: dict[str, float], cpu: dict[str, float], rss: dict[str, float], tensors: dict[str, float]
) -> str:
    """Medians per peer: wall and CPU seconds, ours against learn2learn (> 1: ours faster) on each, and
    peak memory (resident set, and live tensors) against the plain step."""
    lines = [
        "| peer | wall s | CPU s | l2l / ours (wall) | l2l / ours (CPU) | CPU vs plain "
        "| peak RSS MiB | RSS vs plain | peak tensors MiB | tensors vs plain |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in seconds:
        lines.append(
            f"| {name} | {seconds[name]:.3f} | {cpu[name]:.3f} | {_ratio_to_l2l(seconds, name)} "
            f"| {_ratio_to_l2l(cpu, name)} | {cpu[name] / cpu['plain']:.2f}x "
            f"| {_memory_cells(rss, name)} | {_memory_cells(tensors, name)} |"
        )
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=32, help="episodes per meta-iteration")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--queries", type=int, default=15, help="query images per class")
    parser.add_argument("--steps", type=int, default=1, help="inner SGD steps")
    parser.add_argument("--lr", type=float, default=0.4, help="inner learning rate")
    parser.add_argument("--filters", type=int, default=64, help="conv-4 filters (64, or 32)")
    parser.add_argument("--size", type=int, default=28, help="image side (28; 84 for mini-ImageNet)")
    parser.add_argument("--channels", type=int, default=1, help="1 (Omniglot) or 3 (mini-ImageNet)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peers", default="", help=f"comma-separated subset of: {', '.join(PEERS)}")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-peer memory subprocesses")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (2 tasks, 8 filters): seconds")
    parser.add_argument("--json", help="write the measurements to this file")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.queries, args.filters, args.repeats = 2, 2, 8, 2
    for option in ("tasks", "ways", "queries", "steps", "filters", "channels", "threads", "repeats"):
        if getattr(args, option) < (2 if option == "ways" else 1):
            parser.error(
                f"--{option} must be at least {2 if option == 'ways' else 1}, got {getattr(args, option)}"
            )
    if args.size < 16:
        parser.error(f"--size must be at least 16 (four 2x2 pools), got {args.size}")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    chosen = [n.strip() for n in args.peers.split(",") if n.strip()] or list(PEERS)
    unknown = [n for n in chosen if n not in PEERS]
    if unknown:
        parser.error(f"--peers: unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    args.names = [n for n in PEERS if n in chosen or n == "plain"]  # plain: the reference, always
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    s = Setting(
        args.ways,
        args.queries,
        args.tasks,
        args.steps,
        args.filters,
        args.size,
        args.channels,
        args.lr,
        args.device,
    )
    if args.memory_of is not None:
        run = PEERS[args.memory_of](s, s.episodes(torch.float32), torch.float32)
        # the resident set first, in the fresh process; the live-tensor peak does not depend on what ran before
        print(peak_growth(run, 2, args.device), tensor_peak(run, 2, args.device))
        return
    parity = check_parity(s, args.names)
    print(
        f"parity with learn2learn (float64, {min(s.tasks, PARITY_TASKS)} episodes, rtol {RTOL:g}, atol {ATOL:g}), "
        "largest |difference|: " + (", ".join(f"{n} {d:.1e}" for n, d in parity.items()) or "no pair chosen"),
        flush=True,
    )
    episodes = s.episodes(torch.float32)
    runs = {name: PEERS[name](s, episodes, torch.float32) for name in args.names}
    samples, cpu_samples = time_interleaved(runs, args.repeats, args.device)
    seconds = {name: statistics.median(v) for name, v in samples.items()}
    cpu = {name: statistics.median(v) for name, v in cpu_samples.items()}
    if args.no_memory:
        memory: dict[str, float] = {}
        tensors: dict[str, float] = {}
    else:
        measured = ["fomaml", "plain"] if args.quick else args.names
        chosen = [n for n in measured if n in args.names]
        peaks = in_subprocesses(__file__, argv, chosen)
        memory = {name: rss for name, (rss, _) in peaks.items()}
        tensors = {name: live for name, (_, live) in peaks.items()}
    print(
        f"\nconv-4 {s.filters} filters, {s.channels}x{s.size}x{s.size}, {s.ways}-way 1-shot, {s.queries} queries a "
        f"class, {s.tasks} tasks, {s.steps} inner step(s) at lr {s.lr}, {args.threads} thread(s), {s.device}; "
        f"median of {args.repeats} interleaved rounds"
    )
    print(table(seconds, cpu, memory, tensors))
    if args.json:
        report = {
            "args": {k: v for k, v in vars(args).items() if k != "names"},
            "parity_max_abs_difference": parity,
            "seconds": seconds,
            "samples": samples,
            "cpu_seconds": cpu,
            "cpu_samples": cpu_samples,
            "speed_vs_l2l": {
                n: seconds[COUNTERPART[n]] / seconds[n]
                for n in OURS
                if COUNTERPART[n] in seconds and n in seconds
            },
            "speed_vs_l2l_cpu": {
                n: cpu[COUNTERPART[n]] / cpu[n] for n in OURS if COUNTERPART[n] in cpu and n in cpu
            },
            "memory_bytes": memory,
            "memory_vs_plain": {n: m / memory["plain"] for n, m in memory.items()},
            "tensor_peak_bytes": tensors,
            "tensor_peak_vs_plain": {n: m / tensors["plain"] for n, m in tensors.items()},
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
