"""Reporting: every table and figure of the study, from run folders (metrics.json, predictions.csv) and the
numbers of `attrlib.evaluation` and `attrlib.inspection`, so a notebook can show runs another made. A
notebook writes `reporting.<name>` for any table or figure. Reporting imports evaluation and inspection,
never the reverse.

    save     save_fig (PNG and PDF) and save_table (CSV, Markdown, LaTeX): the one writer of each; show
    tables   seed_table, format_summary, format_within_model, format_robustness, stack_summaries, label_target_data: "mean ± std" over seeds
             (sample std, ddof=1; "± n/a" for one seed), said in each table's caption; swap_intervals (the content
             swap's 95 % intervals)
    figures  bias_heatmap, sample_grid, spectra_figure, sweep_figure, shortcut_audit_figure, confusion_figure,
             confusion_grid, llr_figure, runs_llr_figure, robustness_figure, radius_sweep_figure, cam_grid,
             run_cam_grid
    draw     show_image, show_overlay: an image, and a CAM over it, on one axes
    explorer cam_explorer (ipywidgets: technique, image -> probabilities and CAM overlay) and explain_figure;
             static figures under `attrlib study` (HEADLESS_ENV)
"""
from ..simulator import SIMULATED_NOTE
from .draw import show_image, show_overlay
from .explorer import HEADLESS_ENV, cam_explorer, explain_figure
from .figures import (headline_figure, open_set_figure, bias_heatmap, cam_grid, confusion_figure, confusion_grid, llr_figure,
                      radius_sweep_figure, robustness_figure, run_cam_grid, runs_llr_figure, sample_grid,
                      shortcut_audit_figure,
                      spectra_figure, sweep_figure)
from .save import save_fig, save_table, set_figure_formats, show
from .tables import (COMPACT_GAIN, TARGET_DATA_MARK, format_open_set, format_robustness, format_summary,
                     format_within_model, label_target_data, seed_table, stack_summaries, swap_intervals)

__all__ = [
    "open_set_figure", "format_open_set",
    "HEADLESS_ENV", "SIMULATED_NOTE", "TARGET_DATA_MARK", "bias_heatmap", "cam_explorer", "cam_grid",
    "confusion_figure", "confusion_grid", "explain_figure", "format_robustness", "format_summary",
    "label_target_data", "llr_figure", "radius_sweep_figure", "robustness_figure", "run_cam_grid", "runs_llr_figure",
    "sample_grid",
    "save_fig", "save_table", "set_figure_formats", "seed_table", "show", "shortcut_audit_figure", "show_image", "show_overlay", "spectra_figure",
    "stack_summaries", "sweep_figure", "COMPACT_GAIN", "format_within_model", "headline_figure", "swap_intervals",
]
