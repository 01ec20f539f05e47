"""Progress bars and training lines: shown in a terminal, never in a notebook's output.

A notebook's visible output is its figures, tables and a few lines of text. A progress bar drawn inside a
kernel (JupyterLab, or papermill running the study) stays in the saved notebook as a stale "0%| 0/6" line and
ends up in the HTML report; a line per epoch buries the results. So every bar and training line of the package
goes through here, and is shown only when stderr is an interactive terminal (`attrlib train` in a shell).
In a kernel the training lines are still kept: each run folder's `train.log` (`attrlib.runfolder`).

Plain `tqdm.std` bars (not `tqdm.auto`): no Jupyter widget whose state a saved notebook would keep.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable

from tqdm.std import tqdm

# Set to force bars on (1) or off (0) whatever stderr is (tests, a CI log that wants them).
PROGRESS_ENV = "ATTRLIB_PROGRESS"


def interactive() -> bool:
    """True when progress can be shown: stderr is a terminal (not a Jupyter kernel's stream, not a pipe), or
    ATTRLIB_PROGRESS=1; ATTRLIB_PROGRESS=0 turns it off."""
    forced = os.environ.get(PROGRESS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def bar(iterable: Iterable | None = None, enabled: bool | None = True, **kwargs: Any) -> tqdm:
    """A tqdm bar over `iterable`, drawn only when `enabled` and `interactive()` (disabled, it still
    iterates and accepts update/set_postfix, at no cost)."""
    return tqdm(iterable, disable=not (enabled and interactive()), **kwargs)


def say(line: str, enabled: bool = True) -> None:
    """Print a progress line (an epoch's loss) in a terminal, above any bar; nothing in a kernel."""
    if enabled and interactive():
        tqdm.write(line, file=sys.stderr)
