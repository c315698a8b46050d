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

Before timing, peers that compute the same maths are checked to give the same first meta-gradient.

    python benchmarks/meta_iteration.py --quick   # both regimes (T=3, k=3, crop 32): under two CPU minutes
    python benchmarks/meta_iteration.py --backbone resnet18 --crop 64 --tasks 3 --shots 3
    python benchmarks/meta_iteration.py --regime sinusoid --iterations 100
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from metalearn import MetaTrainer, TrainerConfig
from metalearn.algorithms import MAML, MetaIQA, Reptile
from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp
from metalearn.task import Task


def mse(pred: Tensor, target: Tensor) -> Tensor:
    return torch.nn.functional.mse_loss(pred.reshape(target.shape), target)


@dataclass
class Setting:
    regime: str
    backbone: str
    crop: int
    tasks: int
    shots: int
    batch: int
    device: str
    inner_lr: float = 1e-3  # SGD: MAML, FOMAML, Reptile
    adam_lr: float = 1e-4  # MetaIQA's inner Adam
    outer_lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)


# -- models and data ---------------------------------------------------------------------------------
def build_model(s: Setting) -> nn.Module:
    torch.manual_seed(0)
    if s.regime == "sinusoid":
        return sinusoid_mlp().to(s.device)
    from metalearn_iqa.model.network import IQANet, ModelConfig

    config = ModelConfig(backbone=s.backbone, norm="batch") if s.backbone == "small" else ModelConfig()
    return IQANet(config).to(s.device).train()


def iqa_tasks(s: Setting) -> list[Task]:
    g = torch.Generator().manual_seed(1)

    def batch() -> tuple[Tensor, Tensor]:
        images = torch.rand(s.batch, 3, s.crop, s.crop, generator=g)
        return images.to(s.device), torch.rand(s.batch, generator=g).to(s.device)

    return [
        Task(support=[batch() for _ in range(s.shots)], query=[batch() for _ in range(s.shots)])
        for _ in range(s.tasks)
    ]


class TaskStream:
    """What every peer draws its meta-batches from: fixed IQA tasks, or fresh sinusoid tasks per call."""

    def __init__(self, s: Setting) -> None:
        self.s = s
        self.fixed = iqa_tasks(s) if s.regime == "iqa" else None
        self.sampler = SinusoidSampler(shots=10, query_shots=10)
        self.generator = torch.Generator().manual_seed(2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Task]:
        if self.fixed is not None:
            return self.fixed
        return self.sampler.sample(n, generator or self.generator)


# -- peers -------------------------------------------------------------------------------------------
class Peer:
    """One way to run a meta-iteration: `meta_gradient` (the mean over tasks, for the parity check) and
    `iterate` (one full meta-iteration, outer Adam step included)."""

    name = "peer"
    steps_per_task = 0  # forward+backward passes per task, for the matching plain-training limit (e)

    def __init__(self, s: Setting, stream: TaskStream) -> None:
        self.s, self.stream = s, stream
        self.model = build_model(s)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=s.outer_lr)

    def task_gradients(self, tasks: list[Task]) -> None:
        """Accumulate the tasks' meta-gradients (summed) into `.grad`."""
        raise NotImplementedError

    def meta_gradient(self, tasks: list[Task]) -> list[Tensor]:
        self.opt.zero_grad(set_to_none=True)
        self.task_gradients(tasks)
        out = [p.grad.detach().clone() / len(tasks) for p in self.params]  # type: ignore[union-attr]
        self.opt.zero_grad(set_to_none=True)
        return out

    def iterate(self) -> None:
        tasks = self.stream.sample(self.s.tasks)
        self.task_gradients(tasks)
        for p in self.params:
            p.grad.div_(len(tasks))  # type: ignore[union-attr]
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


class Ours(Peer):
    """Our algorithm through `MetaTrainer.step` (sampling, trainer bookkeeping and outer Adam included)."""

    def __init__(self, s: Setting, stream: TaskStream, name: str, algorithm: object, steps: int) -> None:
        super().__init__(s, stream)
        self.name, self.steps_per_task, self.algorithm = name, steps, algorithm
        config = TrainerConfig(
            tasks_per_batch=s.tasks, outer_lr=s.outer_lr, progress=False, amp=False, bn_stats="keep"
        )
        self.trainer = MetaTrainer(self.model, algorithm, stream, mse, device=s.device, config=config)  # type: ignore[arg-type]

    def meta_gradient(self, tasks: list[Task]) -> list[Tensor]:
        results = list(self.algorithm.meta_steps(self.model, tasks, mse))  # type: ignore[attr-defined]
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        return [sum(r.gradient[n] for r in results) / len(tasks) for n in names]

    def iterate(self) -> None:
        self.trainer.step()


class Plain(Peer):
    """(e): `n` plain Adam steps on one model, one batch each (the batches the meta-iteration reads)."""

    def __init__(self, s: Setting, stream: TaskStream, n: int) -> None:
        super().__init__(s, stream)
        self.name, self.n = f"(e) plain x{n}", n
        tasks = stream.sample(s.tasks)
        batches = [b for t in tasks for b in [*t.support, *t.query]]
        self.batches = [batches[i % len(batches)] for i in range(n)]

    def iterate(self) -> None:
        for x, y in self.batches:
            loss = mse(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()


def support_query(task: Task) -> tuple[list, list]:
    as_list = lambda d: [d] if isinstance(d, tuple) else list(d)  # noqa: E731
    return as_list(task.support), as_list(task.query)


class L2L(Peer):
    """(a) learn2learn's MAML: clone, `adapt` k times, query loss backward into the meta-model's `.grad`."""

    def __init__(self, s: Setting, stream: TaskStream, first_order: bool, steps: int) -> None:
        super().__init__(s, stream)
        import learn2learn as l2l

        self.name = f"(a) l2l MAML{'(first_order)' if first_order else ''}"
        self.k = steps
        self.maml = l2l.algorithms.MAML(self.model, lr=s.inner_lr, first_order=first_order)

    def task_gradients(self, tasks: list[Task]) -> None:
        for task in tasks:
            support, query = support_query(task)
            learner = self.maml.clone()
            for i in range(self.k):
                x, y = support[i % len(support)]
                learner.adapt(mse(learner(x), y))
            x, y = query[0]
            mse(learner(x), y).backward()


class Higher(Peer):
    """(b) `higher` directly: `innerloop_ctx` with SGD, k differentiable steps, query loss backward."""

    def __init__(self, s: Setting, stream: TaskStream, first_order: bool, steps: int) -> None:
        super().__init__(s, stream)
        self.name = f"(b) higher {'FOMAML' if first_order else 'MAML'}"
        self.k, self.first_order = steps, first_order
        self.inner = torch.optim.SGD(self.params, lr=s.inner_lr)

    def task_gradients(self, tasks: list[Task]) -> None:
        import higher

        for task in tasks:
            support, query = support_query(task)
            with higher.innerloop_ctx(
                self.model, self.inner, copy_initial_weights=False, track_higher_grads=not self.first_order
            ) as (fmodel, diffopt):
                for i in range(self.k):
                    x, y = support[i % len(support)]
                    diffopt.step(mse(fmodel(x), y))
                x, y = query[0]
                loss = mse(fmodel(x), y)
                if self.first_order:
                    grads = torch.autograd.grad(loss, list(fmodel.parameters()))
                    for p, g in zip(self.params, grads):
                        p.grad = g if p.grad is None else p.grad + g
                else:
                    loss.backward()


class Naive(Peer):
    """(c) The MetaIQA authors' loop: deep-copy the model and build a new Adam for every task; k Adam steps
    on support, then k on query, the query gradients averaged (MetaIQA's maths)."""

    name = "(c) naive deepcopy+Adam"

    def __init__(self, s: Setting, stream: TaskStream, steps: int) -> None:
        super().__init__(s, stream)
        self.k = steps

    def task_gradients(self, tasks: list[Task]) -> None:
        for task in tasks:
            support, query = support_query(task)
            fast = copy.deepcopy(self.model)
            opt = torch.optim.Adam(fast.parameters(), lr=self.s.adam_lr, betas=self.s.betas)
            for x, y in support[: self.k]:
                opt.zero_grad()
                mse(fast(x), y).backward()
                opt.step()
            for x, y in query[: self.k]:
                opt.zero_grad()
                mse(fast(x), y).backward()
                for p, q in zip(self.params, fast.parameters()):
                    assert q.grad is not None
                    g = q.grad / self.k
                    p.grad = g.clone() if p.grad is None else p.grad + g
                opt.step()


class TorchoptAdam(Peer):
    """(d) torchopt's functional Adam on a parameter tuple (MetaIQA's maths, first order)."""

    name = "(d) torchopt functional Adam"

    def __init__(self, s: Setting, stream: TaskStream, steps: int) -> None:
        super().__init__(s, stream)
        import torchopt

        self.torchopt, self.k = torchopt, steps
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]

    def task_gradients(self, tasks: list[Task]) -> None:
        tx = self.torchopt.adam(lr=self.s.adam_lr, betas=self.s.betas)
        buffers = dict(self.model.named_buffers())
        for task in tasks:
            support, query = support_query(task)
            params = tuple(p.detach().requires_grad_(True) for p in self.params)
            state = tx.init(params)

            def loss_at(ps: tuple, x: Tensor, y: Tensor) -> Tensor:
                return mse(functional_call(self.model, ({**dict(zip(self.names, ps)), **buffers}), (x,)), y)

            for x, y in support[: self.k]:
                grads = torch.autograd.grad(loss_at(params, x, y), params)
                updates, state = tx.update(grads, state, inplace=False)
                params = tuple(
                    t.detach().requires_grad_(True)
                    for t in self.torchopt.apply_updates(params, updates, inplace=False)
                )
            for x, y in query[: self.k]:
                grads = torch.autograd.grad(loss_at(params, x, y), params)
                for p, g in zip(self.params, grads):
                    p.grad = g / self.k if p.grad is None else p.grad + g / self.k
                updates, state = tx.update(grads, state, inplace=False)
                params = tuple(
                    t.detach().requires_grad_(True)
                    for t in self.torchopt.apply_updates(params, updates, inplace=False)
                )


class TorchoptMetaSGD(Peer):
    """(d) torchopt's `MetaSGD`: differentiable in-place steps on the module, second-order MAML's maths."""

    name = "(d) torchopt MetaSGD MAML"

    def __init__(self, s: Setting, stream: TaskStream, steps: int) -> None:
        super().__init__(s, stream)
        import torchopt

        self.torchopt, self.k = torchopt, steps
        self.inner = torchopt.MetaSGD(self.model, lr=s.inner_lr)

    def task_gradients(self, tasks: list[Task]) -> None:
        state = self.torchopt.extract_state_dict(self.model, by="reference", detach_buffers=True)
        for task in tasks:
            support, query = support_query(task)
            for i in range(self.k):
                x, y = support[i % len(support)]
                self.inner.step(mse(self.model(x), y))
            x, y = query[0]
            mse(self.model(x), y).backward()
            self.torchopt.recover_state_dict(self.model, state)


class FuncLoop(Peer):
    """A bare `torch.func` MAML: `vmap` over tasks of `grad` through one SGD step (sinusoid only)."""

    def __init__(self, s: Setting, stream: TaskStream, first_order: bool) -> None:
        super().__init__(s, stream)
        self.name = f"bare torch.func {'FOMAML' if first_order else 'MAML'}"
        names = [n for n, _ in self.model.named_parameters()]
        model, lr = self.model, s.inner_lr

        def loss_at(p: dict, x: Tensor, y: Tensor) -> Tensor:
            return mse(functional_call(model, p, (x,)), y)

        def adapted(p: dict, xs: Tensor, ys: Tensor) -> dict:
            g = grad(loss_at)(p, xs, ys)
            return {k: v - lr * g[k] for k, v in p.items()}

        if first_order:

            def task_grad(p: dict, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> dict:
                return grad(loss_at)(adapted(p, xs, ys), xq, yq)
        else:

            def task_grad(p: dict, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> dict:
                return grad(lambda q: loss_at(adapted(q, xs, ys), xq, yq))(p)

        self.batched = vmap(task_grad, in_dims=(None, 0, 0, 0, 0))
        self.names = names

    def task_gradients(self, tasks: list[Task]) -> None:
        data = [torch.stack([getattr(t, w)[i] for t in tasks]) for w in ("support", "query") for i in (0, 1)]
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        grads = self.batched(params, *data)
        for n, p in zip(self.names, self.params):
            p.grad = grads[n].sum(0)


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


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_of(name: str, s: Setting, with_torchopt: bool) -> float:
    """Run in a subprocess: peak memory growth (bytes) over two meta-iterations of one peer alone."""
    (peer,), _ = build_peers(s, with_torchopt, only=name)
    if s.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(2):
            peer.iterate()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    # ru_maxrss would include the import and setup peaks: sample the resident set during the iterations
    base, peak, done = current_rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(2):
        peer.iterate()
    done.set()
    sampler.join()
    return float(max(peak[0], current_rss_bytes()) - base)


def measure_memory(names: list[str], args: argparse.Namespace) -> dict[str, float]:
    out = {}
    for name in names:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--memory-of", name]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[name] = float(result.stdout.strip().splitlines()[-1])
    return out


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
