"""metalearn: task abstractions, pluggable meta-learning algorithms and one shared training loop."""

__version__ = "0.1.0"
