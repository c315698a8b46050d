"""Few-shot datasets: loaders for the published layouts and the embedded glyphs, one registry."""
