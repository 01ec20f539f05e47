"""Tables as a reader takes them in on one screen: a narrow headline, the full table one click away.

    table_html(frame)      # HTML: the headline table, then the whole table in a collapsed <details>
    headline(frame)        # the narrow table: arm, accuracy [95% CI], difference [95% CI], verdict
    rounded(frame)         # floats as text, at the digits the table's intervals support

The one place a table becomes HTML: the report's table pages (`attrlib.study.report`) and every DataFrame a
notebook displays (`attrlib.study.session` registers `table_html` with IPython) use it, with `TABLE_CSS`.
A table of at most `HEADLINE_COLUMNS` columns, or narrower than `MAX_WIDTH_PX`, is shown whole. A wider one
shows its headline: for the
study's summaries (`attrlib.evaluation.summary_table` numbers, or `reporting.format_summary` text) the
arm, its accuracy with the interval, the paired difference with the baseline with its interval and
the verdict; for any other table its first columns. Numbers are rounded to two significant digits of the
intervals' half-width (a half-width of 0.11 gives 2 decimals, 0.03 gives 3), or to 3 decimals in a table
without intervals.
"""
from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

HEADLINE_COLUMNS = 6     # columns, the row labels included, a table always shows whole
MAX_WIDTH_PX = 1100      # a wider table (estimated: `estimated_width`) shows its headline: a 1,400 px window
CHAR_PX, CELL_PAD_PX = 7.5, 29  # TABLE_CSS at 13 px: the average width of a character, a cell's padding
TEXT_PX = 28 * 13        # a prose column wraps at 28 em
DEFAULT_DIGITS = 3       # decimals of a table without intervals

TABLE_CSS = """
table.attr { border-collapse: collapse; margin: .4em 0 1em; font-size: 13px; font-variant-numeric: tabular-nums; }
table.attr th, table.attr td { padding: .3em .9em; text-align: right; vertical-align: top; white-space: nowrap; }
table.attr th { border-bottom: 1px solid #999; font-weight: 600; }
table.attr tbody tr:nth-child(even) { background: #f6f6f6; }
table.attr th:first-child, table.attr td:first-child { text-align: left; }
table.attr td.text, table.attr th.text { text-align: left; white-space: normal; width: 28em; min-width: 12em; }
details.attr-full { margin: .2em 0 1.2em; } details.attr-full summary { cursor: pointer; color: #1a5fb4; }
div.attr-wide { overflow-x: auto; max-width: 100%; }
"""


def interval_digits(low, high, default: int = DEFAULT_DIGITS) -> int:
    """Decimals that show two significant digits of the intervals' (median) half-width, 1 to 4; `default`
    when there is no finite interval."""
    half = (np.asarray(high, dtype=float) - np.asarray(low, dtype=float)) / 2
    half = half[np.isfinite(half) & (half > 0)]
    if not half.size:
        return default
    return int(min(4, max(1, 1 - math.floor(math.log10(float(np.median(half)))))))


def _interval_pairs(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    return [(c, f"{c}_low", f"{c}_high") for c in frame.columns
            if f"{c}_low" in frame.columns and f"{c}_high" in frame.columns]


def _number(value, digits: int, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or pd.isna(value):
        return ""
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _with_interval(value, low, high, digits: int, sign: bool = False) -> str:
    if pd.isna(value):
        return ""
    text = _number(value, digits, sign)
    return text + (f" [{_number(low, digits, sign)}, {_number(high, digits, sign)}]" if not pd.isna(low) else "")


def _flat(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The frame with its row labels as leading columns, and their names."""
    if isinstance(frame.index, pd.RangeIndex) and frame.index.name is None:
        return frame.copy(), []
    keys = [n if n is not None else ("" if frame.index.nlevels == 1 else f"level {i}")
            for i, n in enumerate(frame.index.names)]
    flat = frame.copy()
    flat.index = flat.index.set_names(keys)
    return flat.reset_index(), keys


def _text_columns(frame: pd.DataFrame) -> set[str]:
    """Columns of prose (a note, a verdict): left-aligned and wrapped."""
    return {c for c in frame.columns if (frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]))
            and frame[c].astype(str).str.len().max() > 40 and frame[c].astype(str).str.contains(" ").any()}


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its float columns as text at the digits its intervals support (`interval_digits` over
    every `<x>_low`/`<x>_high` pair), else `DEFAULT_DIGITS`; integers and text as they are."""
    pairs = _interval_pairs(frame)
    digits = (interval_digits(np.concatenate([frame[lo].to_numpy(float) for _, lo, _ in pairs]),
                              np.concatenate([frame[hi].to_numpy(float) for _, _, hi in pairs]))
              if pairs else DEFAULT_DIGITS)
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(lambda v: _number(v, digits))
    return out


def headline(frame: pd.DataFrame, max_columns: int = HEADLINE_COLUMNS) -> pd.DataFrame:
    """The narrow table of `frame` (row labels as leading columns): for a summary (numbers with
    accuracy_low/_high, or format_summary's text) arm, accuracy [CI], difference vs baseline [CI] and
    verdict; otherwise its first `max_columns` columns."""
    flat, keys = _flat(frame)
    columns = [c for c in flat.columns if c not in keys]
    if "accuracy" in columns:  # a summary: text before accuracy labels the rows (a table read back from CSV)
        lead = [c for c in columns[:columns.index("accuracy")] if not pd.api.types.is_numeric_dtype(flat[c])]
        keys, columns = keys + lead, [c for c in columns if c not in lead]
    if {"accuracy", "accuracy_low", "accuracy_high"} <= set(columns):  # summary_table's numbers
        digits = interval_digits(flat["accuracy_low"], flat["accuracy_high"])
        out = flat[keys].copy()
        out["accuracy [95% CI]"] = [_with_interval(v, lo, hi, digits) for v, lo, hi in
                                    zip(flat["accuracy"], flat["accuracy_low"], flat["accuracy_high"])]
        if {"difference", "difference_low", "difference_high"} <= set(columns):
            out["difference vs baseline [95% CI]"] = [
                _with_interval(v, lo, hi, digits, sign=True) for v, lo, hi in
                zip(flat["difference"], flat["difference_low"], flat["difference_high"])]
        if "verdict" in columns:
            out["verdict"] = flat["verdict"].fillna("")
        return out
    ci = next((c for c in columns if c.startswith("accuracy ") and c.endswith(" CI")), None)
    if "accuracy" in columns and ci:  # format_summary's text: "0.49 ± 0.02" and "[0.45, 0.53]"
        out = flat[keys].copy()
        mean = flat["accuracy"].map(lambda v: _number(v, 2) if isinstance(v, float) else str(v).split(" ±")[0])
        out[f"accuracy [{ci[len('accuracy '):-len(' CI')]} CI]"] = (mean + " " + flat[ci].astype(str)).str.strip()
        for column in [c for c in columns if c.startswith("difference vs") or c == "verdict"]:
            out[column] = flat[column]
        return out
    keep = keys[: max_columns - 1] + columns[: max(1, max_columns - len(keys[: max_columns - 1]))]
    return flat[keep]


def estimated_width(frame: pd.DataFrame) -> float:
    """The width in pixels `frame` (row labels as columns, cells as text) takes under TABLE_CSS: per column
    its longest cell or header (prose columns wrap at `TEXT_PX`) times a character's width, plus padding."""
    text = _text_columns(frame)
    width = 0.0
    for column in frame.columns:
        chars = max([len(str(column))] + [len(str(v)) for v in frame[column]])
        width += min(chars * CHAR_PX, TEXT_PX) if column in text else chars * CHAR_PX
        width += CELL_PAD_PX
    return width


def _frame_html(frame: pd.DataFrame) -> str:
    text = _text_columns(frame)
    head = "".join(f"<th{' class=text' if c in text else ''}>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = "".join(f"<td{' class=text' if c in text else ''}>{html.escape('' if pd.isna(v) else str(v))}</td>"
                        if not isinstance(v, (list, tuple, np.ndarray)) else f"<td>{html.escape(str(v))}</td>"
                        for c, v in zip(frame.columns, values))
        rows.append(f"<tr>{cells}</tr>")
    return f"<table class='attr'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def table_html(frame: pd.DataFrame, max_columns: int = HEADLINE_COLUMNS, css: bool = True) -> str:
    """`frame` as HTML a reader takes in: whole when it has at most `max_columns` columns (row labels
    included) or fits `MAX_WIDTH_PX`, else its `headline` and, collapsed below it, the whole table
    (scrolling sideways inside its own box, so the page keeps its width). Numbers `rounded`; `css` adds
    `TABLE_CSS` (a notebook output carries its own style)."""
    flat, _ = _flat(frame)
    whole = rounded(flat)
    style = f"<style>{TABLE_CSS}</style>" if css else ""
    if len(flat.columns) <= max_columns or estimated_width(whole) <= MAX_WIDTH_PX:
        return style + _frame_html(whole)
    short = headline(frame, max_columns)
    short = rounded(short) if not set(short.columns) - set(flat.columns) else short
    return (style + _frame_html(short) +
            f"<details class='attr-full'><summary>Full table ({len(flat.columns)} columns, {len(flat)} rows)"
            f"</summary><div class='attr-wide'>{_frame_html(whole)}</div></details>")
