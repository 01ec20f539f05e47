"""A rotation: the held-out subclass(es) of one leave-out rotation, as a value.

    Rotation(("car", "face")).key == "car+face"      the one key format (tables' `heldout` column, notebooks)
    Rotation.parse("car+face") == ("car", "face")    the one parser of a key
    parse_rotations("a, b+c") == (("a",), ("b", "c"))  a notebook's or the CLI's list of rotations

A Rotation is a tuple of names (so `Config.heldout`, which holds one, hashes and serialises as before) that
prints as its key. It is parsed once at the edge (a notebook's `heldout`, the CLI, a table read back) and
travels as a value: code below never joins names into a key or splits a key back into names itself.
"""
from __future__ import annotations

from typing import Iterable

SEPARATOR = "+"   # between the subclasses one rotation holds out together
LIST_SEPARATOR = ","  # between rotations in a notebook's `heldout` or the CLI's --heldout


class Rotation(tuple):
    """The held-out subclass(es) of one rotation: a tuple of names; `key` ("a+b") is how tables name it."""

    def __new__(cls, names: str | Iterable[str] = ()) -> "Rotation":
        if isinstance(names, str):
            return cls.parse(names)
        return super().__new__(cls, (str(n) for n in names))

    @classmethod
    def parse(cls, key: str) -> "Rotation":
        """The rotation a key names ("a+b"; blanks around names ignored)."""
        return super().__new__(cls, (p.strip() for p in str(key).split(SEPARATOR) if p.strip()))

    @property
    def key(self) -> str:
        return SEPARATOR.join(self)

    def __str__(self) -> str:
        return self.key

    def __repr__(self) -> str:
        return f"Rotation({self.key!r})"

    def __reduce__(self):  # pickles (Dask, multiprocessing) as the value it is
        return (Rotation, (tuple(self),))


def key(rotation: str | Iterable[str]) -> str:
    """The key of a rotation given as names or as a key already."""
    return Rotation(rotation).key


def parse_rotations(heldout: str | Iterable[str]) -> tuple[Rotation, ...]:
    """Rotations from a notebook's `heldout`: "a, b" is two rotations (a held out, then b), "a+b" one rotation
    holding out both; an iterable of names (or of rotations) is one rotation per item. Empty: ()."""
    items = heldout.split(LIST_SEPARATOR) if isinstance(heldout, str) else list(heldout)
    rotations = tuple(Rotation(item) for item in items)
    return tuple(r for r in rotations if r)


def rotations_text(rotations: Iterable[Iterable[str]]) -> str:
    """Rotations back as a notebook's `heldout` ("a,b+c"): what `parse_rotations` reads."""
    return LIST_SEPARATOR.join(Rotation(r).key for r in rotations)
