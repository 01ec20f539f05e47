"""Evaluation: the study's numbers from run folders (scikit-learn metrics, intervals, gap closed, LLR scores)
and robustness to post-processing. No figures and no text tables here: `attrlib.reporting` draws and writes
them from these numbers.

    metrics     per run: split_metrics, run_metrics (metrics.json's numbers from predictions),
                seed_style_report, confusion, per_generator_auc, expected_calibration_error, calibration_error,
                worst_generator_recall, shortcut_gap
    stats       over seeds and images: aggregate_over_seeds, bootstrap_ci (Interval), gap_closed (GapClosed)
    llr         llr_scores (seed 000's per-generator log-likelihood ratios)
    summary     per technique over its seeds: paired_predictions, technique_summary, summary_table
    selection   model-selection rules side by side (rule_accuracies, selection_table)
    robustness  perturbations (JPEG, blur, down-up resize), robustness_table, robustness_stats, robustness_summary
    runtime_sweep  radius_sweep, radius_sweep_summary: a test-time attack's radius against random noise of it
    (run folders are read through attrlib.runfolder: load_run, load_predictions, heldout_predictions)
"""
from ..runfolder import (LoadedRun, generators_of, heldout_predictions, heldout_split, load_predictions, load_run,
                         pooled_predictions)
from .llr import llr_scores
from .metrics import (calibration_error, confusion, expected_calibration_error, per_generator_auc, run_metrics,
                      seed_style_report, shortcut_gap, split_metrics, worst_generator_recall)
from .robustness import (Perturbation, clean, down_up, gaussian_blur, jpeg, perturbed_accuracy, robustness_stats,
                         robustness_summary, robustness_table, standard_perturbations)
from .runtime_sweep import radius_sweep, radius_sweep_summary, sign_noise
from .selection import rule_accuracies, selection_table
from .stats import GapClosed, Interval, aggregate_over_seeds, bootstrap_ci, gap_closed
from .summary import paired_predictions, summary_table, technique_summary

__all__ = [
    "rule_accuracies", "selection_table", "GapClosed", "Interval", "LoadedRun", "Perturbation", "aggregate_over_seeds", "bootstrap_ci",
    "calibration_error", "clean", "confusion", "down_up", "expected_calibration_error", "gap_closed",
    "gaussian_blur", "generators_of", "heldout_predictions", "heldout_split", "jpeg", "llr_scores",
    "load_predictions", "load_run", "paired_predictions", "per_generator_auc", "perturbed_accuracy",
    "pooled_predictions", "radius_sweep", "radius_sweep_summary", "robustness_stats", "robustness_summary",
    "robustness_table", "run_metrics",
    "seed_style_report", "shortcut_gap", "sign_noise", "split_metrics", "standard_perturbations",
    "summary_table", "technique_summary", "worst_generator_recall",
]
