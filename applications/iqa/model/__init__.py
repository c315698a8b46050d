"""The IQA network: `network` (architecture and its config), `weights` (initial weights and model files)."""
