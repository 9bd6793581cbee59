"""One registry type for every extension point (rasterizer backends, audio encoders, losses, metrics,
trainers): a name -> entry mapping filled by ``@REGISTRY.register("name")`` next to each implementation.

A registry knows the modules that register into it (``modules``) and imports them on first lookup, so
``choices()`` lists every built-in entry without the caller importing implementations by hand, and a
new entry is one new module plus its name in that tuple. ``modules`` may also map each built-in entry's
name to its module: then :meth:`Registry.names` lists the entries without importing anything (for a
command line's ``--help``, which must not pay for torch).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from l2t_gs.errors import L2TError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; ``what`` names the kind in error messages (e.g. "rasterizer backend")."""

    def __init__(self, what: str, modules: tuple[str, ...] | dict[str, str] = ()) -> None:
        self.what = what
        #: names of the built-in entries, when ``modules`` declares them (name -> module)
        self.declared: tuple[str, ...] = tuple(modules) if isinstance(modules, dict) else ()
        self.modules: tuple[str, ...] = (
            tuple(dict.fromkeys(modules.values())) if isinstance(modules, dict) else tuple(modules)
        )
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self._loaded = not modules

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # set first: the modules register into this registry while importing
            for mod in self.modules:
                importlib.import_module(mod)

    def register(self, name: str, help: str = "") -> Callable[[T], T]:  # noqa: A002 - argparse's word
        """Decorator: register the decorated object under ``name``; a second use of a name is an error."""

        def deco(obj: T) -> T:
            self.add(name, obj, help)
            return obj

        return deco

    def add(self, name: str, obj: T, help: str = "") -> None:  # noqa: A002
        """Register ``obj`` under ``name`` (the non-decorator form)."""
        if name in self._entries and self._entries[name] is not obj:
            raise L2TError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = obj
        self._help[name] = help or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]

    def remove(self, name: str) -> None:
        """Forget ``name`` (e.g. an entry a test registered)."""
        self._entries.pop(name, None)
        self._help.pop(name, None)

    @contextlib.contextmanager
    def overridden(self, name: str, obj: T, help: str = "") -> Iterator[None]:  # noqa: A002
        """Within the ``with`` block, ``name`` is ``obj`` (replacing or adding it); restored afterwards.

        For tests and experiments that swap an entry (e.g. a stand-in for an expensive loss)."""
        self._load()
        had = name in self._entries
        old, old_help = self._entries.get(name), self._help.get(name, "")
        self._entries[name], self._help[name] = obj, help or old_help
        try:
            yield
        finally:
            if had:
                self._entries[name], self._help[name] = old, old_help  # type: ignore[assignment]
            else:
                self._entries.pop(name, None)
                self._help.pop(name, None)

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name is a one-line error listing the choices."""
        self._load()
        if name not in self._entries:
            raise L2TError(f"unknown {self.what} {name!r}; choose from {', '.join(self.choices())}")
        return self._entries[name]

    def choices(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        self._load()
        return tuple(self._entries)

    def names(self) -> tuple[str, ...]:
        """The entries' names without importing their modules: the declared built-ins, then any other
        registered so far. Equal to :meth:`choices` when every declared module registers its names
        (a registry that declares none imports its modules, as :meth:`choices`)."""
        if not self.declared:
            return self.choices()
        return self.declared + tuple(n for n in self._entries if n not in self.declared)

    def help(self, name: str) -> str:
        """The one-line description of an entry."""
        self._load()
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.choices())

    def __len__(self) -> int:
        return len(self.choices())
