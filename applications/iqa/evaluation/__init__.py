"""Judging a model: `predict` (scores for images, evaluation against MOS), `metrics` (SROCC, PLCC, KRCC,
RMSE), `saliency` (where a score comes from)."""
