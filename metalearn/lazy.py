"""Lazy package exports (PEP 562): a package names what it exports and where each name lives, and the
module holding it is imported on first use, so importing the package (and `metalearn --help`) costs no
torch import until something needs it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]], exported: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, whose `exports` map a module to the names it provides;
    `exported` (the package's `__all__`) must list exactly those names."""
    module_of = {name: module for module, names in exports.items() for name in names}
    if sorted(exported) != sorted(module_of):
        raise AssertionError(f"{package}: __all__ and the lazy exports must name the same things")

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exported))

    return __getattr__, __dir__
