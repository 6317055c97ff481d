"""A tiny lazy registry: names map to "module:attribute" strings.

Heavy optional backends (llama.cpp, GPTQModel, bitsandbytes) are imported only
when a user asks for the format that needs them, so `import auditq` stays light.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._targets: dict[str, str] = {}

    def register(self, name: str, target: str) -> None:
        """Register `name` as the object at `target` ("package.module:attr")."""
        if name in self._targets:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._targets[name] = target

    def names(self) -> list[str]:
        return sorted(self._targets)

    def __contains__(self, name: str) -> bool:
        return name in self._targets

    def load(self, name: str) -> T:
        """Import and return the registered object; ImportError propagates to the caller."""
        try:
            target = self._targets[name]
        except KeyError:
            known = ", ".join(self.names())
            raise KeyError(f"unknown {self.kind} {name!r} (known: {known})") from None
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)
