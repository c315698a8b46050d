"""The MetaIQA paper's evaluation protocols."""
