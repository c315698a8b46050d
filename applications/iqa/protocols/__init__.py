"""The evaluation protocols: `lodo` (leave one distortion out), `cross` (synthetic to authentic), `demo` and
the held-out-types protocol it shares with `benchmarks/qpt.py` (`heldout`), their reports (`report`,
`plots`)."""
