"""Tables and pages a reader takes in on one screen, without a network: `attrlib.reporting.html` (a narrow
headline, the whole table collapsed, numbers at the digits the intervals support), the report's pages
(`attrlib.study.report`: nothing fetched from elsewhere, table pages narrow), and a notebook's own output in a
kernel (`attrlib.study.session.notebook_output`: tables as in the report, warnings without machine paths)."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from attrlib.reporting.html import (HEADLINE_COLUMNS, MAX_WIDTH_PX, estimated_width, headline, interval_digits, rounded,
                                   table_html)


def _summary_numbers(n_extra: int = 30) -> pd.DataFrame:
    """summary_table's shape: technique rows, accuracy and difference with their intervals, a verdict and many
    more columns (10_summary_numbers has 42)."""
    frame = pd.DataFrame({
        "avg_precision": [0.41234, 0.51234], "accuracy": [0.49123, 0.56789], "accuracy_std": [0.0, 0.0],
        "accuracy_low": [0.38, 0.45], "accuracy_high": [0.60, 0.68], "difference": [0.0, 0.07666],
        "difference_low": [0.0, 0.01234], "difference_high": [0.0, 0.14321],
        "verdict": ["(the baseline)", "weighted_sampling beats baseline"],
        **{f"extra_{i}": [0.123456, 0.654321] for i in range(n_extra)}},
        index=pd.Index(["baseline", "weighted_sampling"], name="arm"))
    return frame


def test_intervals_decide_the_digits():
    assert interval_digits([0.38], [0.60]) == 2          # half-width 0.11: 0.49 [0.38, 0.60]
    assert interval_digits([0.47], [0.53]) == 3          # half-width 0.03
    assert interval_digits([0.0], [1.0]) == 2            # half-width 0.5: 0.50
    assert interval_digits([0.0], [4.0]) == 1            # half-width 2: 1.5 [0.0, 4.0]
    assert interval_digits([np.nan], [np.nan]) == 3      # no interval: the default
    assert rounded(pd.DataFrame({"x": [0.123456], "x_low": [0.1], "x_high": [0.3], "n": [5]})).iloc[0].tolist() == \
        ["0.12", "0.10", "0.30", 5]


def test_a_wide_summary_shows_a_narrow_headline_and_the_whole_table_collapsed():
    numbers = _summary_numbers()
    short = headline(numbers)
    assert list(short.columns) == ["arm", "accuracy [95% CI]", "difference vs baseline [95% CI]", "verdict"]
    assert short.iloc[1].tolist() == ["weighted_sampling", "0.57 [0.45, 0.68]", "+0.08 [+0.01, +0.14]",
                                      "weighted_sampling beats baseline"]
    page = table_html(numbers)
    tables = re.findall(r"<table.*?</table>", page, re.DOTALL)
    assert len(tables) == 2
    first, full = (len(re.findall(r"<th[ >]", t)) for t in tables)
    assert first == 4 and full == 1 + len(numbers.columns)
    # the whole table behind a click, in its own sideways-scrolling box; numbers rounded as the intervals allow
    assert page.index("<details") < page.index(tables[1]) and "attr-wide" in page and "0.123456" not in page
    assert ">0.12<" in page
    # format_summary's text cells read back from CSV (the row labels a column): the same headline
    text = pd.DataFrame({"technique": ["baseline"], "accuracy": ["0.49 ± 0.00"], "accuracy 95% CI": ["[0.38, 0.60]"],
                         "difference vs baseline": ["+0.00 [+0.00, +0.00]"], "verdict": ["(the baseline)"],
                         **{f"c{i}": ["x"] for i in range(10)}})
    assert headline(text).iloc[0].tolist() == ["baseline", "0.49 [0.38, 0.60]", "+0.00 [+0.00, +0.00]",
                                               "(the baseline)"]


def test_a_narrow_table_is_shown_whole_and_any_wide_one_gets_a_headline():
    narrow = pd.DataFrame({"a": [1.0], "b": [2.0]}, index=pd.Index(["x"], name="row"))
    page = table_html(narrow)
    assert page.count("<table") == 1 and "<details" not in page
    counts = pd.DataFrame(np.arange(9).reshape(1, 9), columns=[f"c{i}" for i in range(9)])  # 9 short columns
    assert estimated_width(counts) < MAX_WIDTH_PX and table_html(counts).count("<table") == 1
    wide = pd.DataFrame(np.full((1, 20), 1234.5678), columns=[f"column {i}" for i in range(20)])
    assert estimated_width(rounded(wide)) > MAX_WIDTH_PX
    page = table_html(wide)
    first = re.search(r"<table.*?</table>", page, re.DOTALL).group(0)
    assert len(re.findall(r"<th[ >]", first)) <= HEADLINE_COLUMNS and "Full table (20 columns" in page


def _executed(path, cells) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    nb = new_notebook(cells=[new_markdown_cell("# 02 · A page")], metadata={"widgets": {"state": {}}})
    for outputs in cells:
        cell = new_code_cell("x")
        cell.outputs = [new_output(**o) for o in outputs]
        nb.cells.append(cell)
    nbformat.write(nb, str(path))


def test_report_pages_fetch_nothing_and_their_tables_fit_the_window(tmp_path):
    """A report of one executed notebook and a 42-column table: no page loads a script, style sheet or image
    from http(s):// (nbconvert's lab template would take require.js, MathJax and mermaid from a CDN, and the
    widget manager for a notebook with widget state); the table page leads with a narrow headline."""
    from attrlib.study.report import build_report, remote_references

    executed, results = tmp_path / "executed", tmp_path / "results"
    executed.mkdir()
    results.mkdir()
    _executed(executed / "02_page.ipynb", [[dict(output_type="display_data",
                                                 data={"text/html": table_html(_summary_numbers()),
                                                       "text/plain": "table"})]])
    _summary_numbers().to_csv(results / "10_summary_numbers.csv")
    index = build_report(executed, tmp_path / "figures", results, tmp_path / "report")
    pages = sorted(index.parent.rglob("*.html"))
    assert len(pages) == 3
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert remote_references(text) == [], page.name
        assert "cdnjs" not in text and "require.min.js" not in text and "unpkg.com" not in text
    table_page = (index.parent / "results" / "10_summary_numbers.html").read_text(encoding="utf-8")
    first = re.search(r"<table.*?</table>", table_page, re.DOTALL).group(0)
    assert len(re.findall(r"<th[ >]", first)) <= HEADLINE_COLUMNS and "<details" in table_page
    # what the check catches
    assert remote_references("<script src='https://cdn/x.js'></script>") and remote_references(
        "<link rel=stylesheet href='//cdn/x.css'>") and remote_references('import("https://cdn/m.mjs")')
    assert remote_references("<a href='https://example.org'>a link to follow</a>") == []


def test_in_a_kernel_tables_take_the_reports_form_and_warnings_lose_their_paths(monkeypatch, capsys):
    import sys

    from IPython.core.formatters import HTMLFormatter

    module = sys.modules["attrlib.study.session"]

    class Shell:  # what notebook_output needs of IPython's shell
        display_formatter = type("F", (), {"formatters": {"text/html": HTMLFormatter()}})()

    monkeypatch.setattr(module, "get_ipython", lambda: None)
    before = warnings.showwarning
    module.notebook_output()  # outside a kernel: nothing changes
    assert warnings.showwarning is before
    shell = Shell()
    monkeypatch.setattr(module, "get_ipython", lambda: shell)
    monkeypatch.setattr(warnings, "showwarning", before)  # restored after the test
    module.notebook_output()
    shown = shell.display_formatter.formatters["text/html"](_summary_numbers())
    assert "<details" in shown and "accuracy [95% CI]" in shown
    warnings.showwarning(UserWarning("the sky is falling"), UserWarning, "/home/someone/x.py", 3)
    assert capsys.readouterr().err == "UserWarning: the sky is falling\n"
