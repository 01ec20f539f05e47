"""Evaluation: the study's numbers from run folders (scikit-learn metrics, intervals, gap closed, LLR scores)
and robustness to post-processing. No figures and no text tables here: `attrlib.reporting` draws and writes
them from these numbers.

    metrics     per run: split_metrics, run_metrics (metrics.json's numbers from predictions),
                seed_style_report, confusion, per_generator_auc, expected_calibration_error, calibration_error,
                worst_generator_recall, shortcut_gap
    stats       over seeds, images and rotations: aggregate_over_seeds, bootstrap_ci (Interval), gap_closed
                (GapClosed), hierarchical_bootstrap, paired_bootstrap / paired_comparison (PairedComparison), verdict
    llr         llr_scores, runs_llr_scores, log_likelihood_ratios, training_prior (seed 000's per-generator
                log-likelihood ratios, the training prior removed)
    summary     per technique over its runs: paired_predictions, technique_summary, summary_table, rotation_table,
                recorded_selection
    selection   model-selection rules side by side (rule_accuracies, selection_table); the arm rule (b) picks
                per rotation (select_arm, selected_runs, ranked_arms: its k best); runs_without (leave rotations
                out). The rules, a run's score under one and the one `choose` live in attrlib.selection
    bias_gap    bias_gap_table: per model, biased minus its own reference (oracle or target-data reference)
    cost        training_cost: seconds per run of every arm, and its ratio to the baseline's
    robustness  perturbations (JPEG, blur, down-up resize), robustness_table, robustness_stats, robustness_summary
    openset     open-set attribution: msp / energy / mahalanobis unknown scores, fit_open_set (thresholds at a
                false-rejection rate on val), AUROC and OSCR with intervals (open_set_metrics, open_set_table)
    inference   predict(run, images): attribute new images with a trained run, "unknown" flagged (`attrlib predict`)
    runtime_sweep  radius_sweep, radius_sweep_summary: a test-time attack's radius against random noise of it
    (run folders are read as records, attrlib.records, and predictions through attrlib.runfolder: load_run,
    load_predictions, heldout_predictions)
"""
from ..runfolder import (LoadedRun, generators_of, heldout_predictions, heldout_split, load_predictions, load_run,
                         pooled_predictions)
from .bias_gap import bias_gap_table
from .cost import training_cost
from .inference import predict, predict_columns, selected_run
from .llr import LLR_DEFINITION, llr_scores, log_likelihood_ratios, runs_llr_scores, training_prior
from .metrics import (MACRO_CONVENTION, calibration_error, confusion, expected_calibration_error, per_generator_auc,
                      run_metrics, seed_style_report, shortcut_gap, split_metrics, worst_generator_recall)
from .openset import (SCORES, OpenSetModel, auroc_by_content, by_content_table, fit_open_set, open_set_frame, open_set_metrics, open_set_table, oscr,
                      oscr_curve, paired_difference, pooled_versus_reference, threshold_at_frr, versus_reference)
from .robustness import (Perturbation, clean, down_up, gaussian_blur, jpeg, perturbed_accuracy, robustness_stats,
                         robustness_summary, robustness_table, standard_perturbations)
from .runtime_sweep import radius_sweep, radius_sweep_summary, sign_noise
from .selection import ranked_arms, rule_accuracies, runs_without, select_arm, selected_runs, selection_table
from .stats import (CONVENTION, GapClosed, Interval, PairedComparison, aggregate_over_seeds, bootstrap_ci, gap_closed,
                    hierarchical_bootstrap, paired_bootstrap, paired_comparison, rotation_bootstrap, rotation_label, verdict,
                    ROTATION_CONVENTION)
from .summary import (conclusions_agree, paired_predictions, recorded_selection, rotation_table, summary_table,
                      technique_summary, training_units, within_model_table)

__all__ = [
    "SCORES", "OpenSetModel", "auroc_by_content", "by_content_table", "fit_open_set", "open_set_frame", "open_set_metrics", "open_set_table", "oscr",
    "oscr_curve", "threshold_at_frr", "paired_difference", "versus_reference", "pooled_versus_reference", "predict", "predict_columns", "selected_run",
    "ranked_arms", "rule_accuracies", "runs_without", "select_arm", "selected_runs", "selection_table",
    "conclusions_agree",
    "CONVENTION", "LLR_DEFINITION", "MACRO_CONVENTION", "PairedComparison", "hierarchical_bootstrap",
    "log_likelihood_ratios", "paired_bootstrap", "paired_comparison", "rotation_label", "rotation_table",
    "ROTATION_CONVENTION", "rotation_bootstrap", "training_units", "within_model_table",
    "recorded_selection", "runs_llr_scores", "training_prior", "verdict",
    "GapClosed", "Interval", "LoadedRun", "Perturbation", "aggregate_over_seeds", "bootstrap_ci",
    "calibration_error", "clean", "confusion", "down_up", "expected_calibration_error", "gap_closed",
    "gaussian_blur", "generators_of", "heldout_predictions", "heldout_split", "jpeg", "llr_scores",
    "load_predictions", "load_run", "paired_predictions", "per_generator_auc", "perturbed_accuracy",
    "pooled_predictions", "radius_sweep", "radius_sweep_summary", "robustness_stats", "robustness_summary",
    "robustness_table", "run_metrics",
    "seed_style_report", "shortcut_gap", "sign_noise", "split_metrics", "standard_perturbations",
    "summary_table", "technique_summary", "training_cost", "bias_gap_table", "worst_generator_recall",
]
