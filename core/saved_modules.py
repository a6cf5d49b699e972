"""``modules_to_save``: extra modules (a head, a norm) trained in full with an adapter.

Each such module is wrapped once in a ``SavedModule`` that keeps the original untouched
and one trainable copy per adapter name (as PEFT does). The forward pass uses the copy
of the first active adapter that has one, and the original when adapters are disabled
or none of the active ones has a copy. The copy's tensors are saved in the adapter file
under ``modules_to_save.<module name>.<tensor>``.
"""

from __future__ import annotations

import copy

from torch import nn


class SavedModule(nn.Module):
    kind = "modules_to_save"

    def __init__(self, original: nn.Module):
        super().__init__()
        self.original = original
        self.copies = nn.ModuleDict()  # adapter name -> trainable copy of original
        self.active_names: list[str] = []
        self.frozen: set[str] = set()
        self.disabled = False

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original", "copies"):
                raise
            return getattr(self.current(), name)  # weight, out_features, ...

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen & set(self.copies):
            self.copies[name].eval()
        return self

    def add(self, name: str) -> nn.Module:
        self.copies[name] = copy.deepcopy(self.original)
        return self.copies[name]

    def current(self) -> nn.Module:
        if not self.disabled:
            for n in self.active_names:
                if n in self.copies:
                    return self.copies[n]
        return self.original

    def forward(self, *args, **kwargs):
        return self.current()(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"copies={list(self.copies)}, active={self.active_names}"
