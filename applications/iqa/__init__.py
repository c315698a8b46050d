"""metalearn_iqa: no-reference image quality assessment on top of the metalearn core (MetaIQA, QPT)."""

__version__ = "0.1.0"
