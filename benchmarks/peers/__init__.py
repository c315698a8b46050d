"""The peers the benchmarks time: `benchmarks/meta_iteration.py`'s, one module each, on the shared `base`
(settings, tasks, the `Peer` contract); `episodic` for `benchmarks/fewshot.py`; `memory` measures either."""
