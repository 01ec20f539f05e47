"""Evaluation: the study's numbers from run folders (scikit-learn metrics, intervals, gap closed, LLR charts)
and robustness to post-processing.

    metrics     seed_style_report, confusion, per_generator_auc, expected_calibration_error, llr_scores,
                llr_figure, aggregate_over_seeds, bootstrap_ci, shortcut_gap, worst_generator_recall,
                gap_closed, summary_table
    robustness  perturbations (JPEG, blur, down-up resize), robustness_table, robustness_figure
    (run folders are read through attrlib.runfolder: load_run, load_predictions, heldout_predictions)

Tables are written with `attrlib.reporting.save_table`, figures with `attrlib.reporting.save_fig`.
"""
from .metrics import (GapClosed, Interval, aggregate_over_seeds, bootstrap_ci, calibration_error, confusion,
                      expected_calibration_error, format_summary, gap_closed, llr_figure, llr_scores, runs_llr_figure,
                      paired_predictions, per_generator_auc, seed_style_report, shortcut_gap, summary_table,
                      technique_summary, worst_generator_recall)
from .robustness import (Perturbation, clean, down_up, gaussian_blur, jpeg, perturbed_accuracy,
                         robustness_figure, robustness_summary, robustness_table, standard_perturbations)
from ..runfolder import LoadedRun, heldout_predictions, heldout_split, load_predictions, load_run

__all__ = [
    "GapClosed", "Interval", "LoadedRun", "Perturbation", "aggregate_over_seeds",
    "bootstrap_ci", "calibration_error", "clean", "confusion", "down_up", "expected_calibration_error",
    "format_summary", "gap_closed", "gaussian_blur", "heldout_predictions", "heldout_split", "jpeg", "llr_figure",
    "llr_scores", "load_predictions", "load_run", "paired_predictions", "per_generator_auc", "perturbed_accuracy",
    "robustness_figure", "robustness_summary", "robustness_table", "runs_llr_figure", "seed_style_report", "shortcut_gap",
    "standard_perturbations", "summary_table", "technique_summary", "worst_generator_recall",
]
