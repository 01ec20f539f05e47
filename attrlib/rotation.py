"""A rotation: the held-out subclass(es) of one leave-out rotation, as a value.

    Rotation(("car", "face")).key == "car+face"      the one key format (tables' `heldout` column, notebooks)
    Rotation.parse("car+face") == ("car", "face")    the one parser of a key
    parse_rotations("a, b+c") == (("a",), ("b", "c"))  a notebook's or the CLI's list of rotations
    Rotation("car", val_subclass="face").val_subclass  the validation subclass it leaves out as well, once resolved

A Rotation is a tuple of names (so `Config.heldout`, which holds one, hashes and serialises as before) that
prints as its key. It is parsed once at the edge (a notebook's `heldout`, the CLI, a table read back) and
travels as a value: code below never joins names into a key or splits a key back into names itself.

It carries its validation subclass once that is resolved (`attrlib.data.resolve_rotation`, on the study's data,
once per rotation: `sweep.plan`), down into every Config of the rotation (`Config.val_subclass` takes it) and back
up from the runs (`records.Record.rotation`, from metrics.json). `val_subclass` is None while unresolved and
"none" when the rotation has none. It is not part of the value's equality or key: a rotation is the subclasses it
holds out.
"""
from __future__ import annotations

from typing import Iterable

SEPARATOR = "+"   # between the subclasses one rotation holds out together
LIST_SEPARATOR = ","  # between rotations in a notebook's `heldout` or the CLI's --heldout


class Rotation(tuple):
    """The held-out subclass(es) of one rotation: a tuple of names; `key` ("a+b") is how tables name it."""

    val_subclass: str | None = None  # the validation subclass it leaves out too: a name, "none", or None (unresolved)

    def __new__(cls, names: str | Iterable[str] = (), val_subclass: str | None = None) -> "Rotation":
        if isinstance(names, str):
            return cls.parse(names, val_subclass)
        rotation = super().__new__(cls, (str(n) for n in names))
        rotation.val_subclass = val_subclass if val_subclass is not None else getattr(names, "val_subclass", None)
        return rotation

    @classmethod
    def parse(cls, key: str, val_subclass: str | None = None) -> "Rotation":
        """The rotation a key names ("a+b"; blanks around names ignored)."""
        rotation = super().__new__(cls, (p.strip() for p in str(key).split(SEPARATOR) if p.strip()))
        rotation.val_subclass = val_subclass
        return rotation

    def resolved(self, val_subclass: str | None) -> "Rotation":
        """The same rotation carrying its validation subclass (a name; "none" or None: it has none)."""
        return Rotation(self, val_subclass=val_subclass or "none")

    @property
    def key(self) -> str:
        return SEPARATOR.join(self)

    def __str__(self) -> str:
        return self.key

    def __repr__(self) -> str:
        carried = "" if self.val_subclass is None else f", val_subclass={self.val_subclass!r}"
        return f"Rotation({self.key!r}{carried})"

    def __reduce__(self):  # pickles (Dask, multiprocessing) as the value it is, validation subclass included
        return (Rotation, (tuple(self), self.val_subclass))


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
