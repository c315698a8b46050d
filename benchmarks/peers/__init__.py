"""The peers `benchmarks/meta_iteration.py` times, one module each, on the shared `base` (settings, tasks,
the `Peer` contract)."""
