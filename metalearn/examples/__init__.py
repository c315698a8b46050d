"""Small, self-contained meta-learning problems used by the demo, tests and benchmarks."""
