"""The core imports and trains without the IQA application's heavy dependencies (the `iqa` extra)."""

from __future__ import annotations

import subprocess
import sys

IQA_ONLY = ("skimage", "piq", "matplotlib", "openpyxl", "learn2learn", "metalearn_iqa")

SCRIPT = f"""
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {IQA_ONLY!r}:
            raise ImportError(f"blocked for this test: {{name}}")

sys.meta_path.insert(0, Blocked())
try:
    import skimage
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not work")

import metalearn
import metalearn.cli
from metalearn import MetaTrainer, TrainerConfig
from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp

trainer = MetaTrainer(sinusoid_mlp(hidden=4), "maml", SinusoidSampler(shots=2), device="cpu",
                      config=TrainerConfig(tasks_per_batch=1, progress=False))
trainer.fit(1)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {IQA_ONLY!r})
print("loaded:", loaded)
"""


def test_the_core_needs_none_of_the_iqa_dependencies() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("loaded: []")
