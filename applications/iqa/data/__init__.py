"""IQA databases: loaders that read each database as its authors publish it, plus the embedded synthetic default."""
