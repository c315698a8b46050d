"""Pixels for training and scoring: `decode` (files to uint8 RGB), `store` (each image decoded once, in RAM or
a shared disk cache), `transforms` (normalisation, downscaling, crops), `loader` (training batches built
ahead in worker processes, identical whatever their number)."""
