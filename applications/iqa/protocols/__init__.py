"""The evaluation protocols: `lodo` (leave one distortion out), `cross` (synthetic to authentic), `demo` and
the held-out-types protocol it shares with `benchmarks/qpt.py` (`heldout`), the n-shot adaptation curve
(`adaptation`), their reports (`report`, `demo_report`, `plots`)."""
