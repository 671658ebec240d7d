"""Generic name -> component registry with descriptions and "did you mean" errors (stdlib only)."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class ComponentArgsError(ValueError):
    """A component was given keyword arguments it does not take."""


def option_names(obj: object) -> list[str]:
    """The keyword options a component takes: its declared `options` mapping, else the parameters with a default of
    its factory (`build` where it has one); the context argument, which has no default, is not an option."""
    declared = getattr(obj, "options", None)
    if isinstance(declared, Mapping):
        return list(declared)
    factory = getattr(obj, "build", obj)
    if not callable(factory):
        return []
    params = inspect.signature(factory).parameters.values()
    return [p.name for p in params if p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


class UnknownComponentError(KeyError):
    """Raised when a name is not registered; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component."""

    name: str
    obj: T
    description: str
    packable: bool = True  # may share a training step with other runs (one packed network, one CUDA graph)
    graph_safe: bool = True  # its per-step work has no host sync and fixed shapes (capturable in a CUDA graph)


class Registry(Generic[T]):
    """A named collection of components.

    Example:
        >>> losses = Registry("losses")
        >>> @losses.register("ce", "plain cross-entropy")
        ... def ce(): ...
        >>> losses.get("ce") is ce
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    @property
    def singular(self) -> str:
        """One component of this kind ('losses' -> 'loss', 'mixers' -> 'mixer')."""
        k = self.kind
        return k[:-2] if k.endswith("sses") else k[:-1] if k.endswith("s") else k

    def register(self, name: str, description: str, *, packable: bool = True,
                 graph_safe: bool = True) -> Callable[[T], T]:
        """Decorator that registers `obj` under `name` with what it can do; a duplicate name is an error."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind}: '{name}' is already registered")
            self._entries[name] = Entry(name, obj, description, packable, graph_safe)
            return obj

        return deco

    def get(self, name: str) -> T:
        """The component registered as `name`."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        """The registry entry for `name` (raises UnknownComponentError with suggestions)."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """One line naming the unknown component, close matches and the known names."""
        close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.singular} '{name}'.{hint} " \
               f"Known: {', '.join(sorted(self._entries))}."

    def check_args(self, name: str, args: Mapping[str, object] | None, field: str) -> None:
        """Raise ComponentArgsError naming `field` unless every key of `args` is an option of component `name`."""
        known = option_names(self.get(name))
        for key in args or {}:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ComponentArgsError(f"{field}: '{key}' is not an option of {self.singular} '{name}'.{hint} "
                                         f"Options: {', '.join(known) or 'none'}.")

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching an fnmatch pattern."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in sorted(self._entries))
