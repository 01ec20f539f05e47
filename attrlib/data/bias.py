"""The bias table: how many images each generator has of each subclass (seed 002's Figure/Table 1).

It is the first thing to look at on a user's own folder: an empty cell is a generator the model never sees
on that content, a full row against empty ones is the shortcut the model will learn.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd


def bias_table(frame: pd.DataFrame, generators: Sequence[str], subclasses: Sequence[str]) -> pd.DataFrame:
    """Counts of `frame` as a generator x subclass DataFrame, every generator and subclass shown (zeros too)."""
    counts = pd.crosstab(frame["generator"], frame["subclass"])
    table = counts.reindex(index=list(generators), columns=list(subclasses), fill_value=0).fillna(0).astype(int)
    table.index.name, table.columns.name = "generator", "subclass"
    return table


def format_bias_table(table: pd.DataFrame, totals: bool = True) -> str:
    """A plain-text rendering for the terminal, with row and column totals."""
    t = table.copy()
    if totals:
        t["total"] = t.sum(axis=1)
        t.loc["total"] = t.sum(axis=0)
    t.index.name, t.columns.name = None, None
    return t.to_string()
