"""Inspection: what a trained model looks at and what its features still know (maps and numbers; the CAM
grids are drawn by `attrlib.reporting`).

    cam       Grad-CAM with captum on one head (GradCam, grad_cam), content reliance against object masks
              (mask_share, content_reliance, content_reliance_table), CAM examples of a run (cam_examples,
              pick_examples, run_cam_examples)
    probe     subclass leakage: a linear probe on frozen features (subclass_probe, probe_run, probe_table), read
              against the generator-only baseline (generator_only_accuracy) and on the unbiased variant
    renders   fresh simulator renders whose fingerprint is known, as image files a run reads (known_images)
    swap      content swap: the same content through every generator; does a prediction follow the
              generator or the content? (content_swap, content_swap_table, swap_cells, swap_outcomes: one row
              per image, swap_summary)
"""
from .cam import (GradCam, cam_examples, content_reliance, content_reliance_table, grad_cam, heldout_renders, mask_area,
                  mask_share, normalize_maps, pick_examples, run_cam_examples, summarize_reliance)
from .probe import extract_features, generator_only_accuracy, probe_model, probe_run, probe_table, subclass_probe
from .renders import known_images
from .swap import (content_swap, content_swap_table, dominant_generators, swap_cells, swap_outcomes, swap_predictions,
                   swap_summary)

__all__ = [
    "GradCam", "cam_examples", "content_reliance", "content_reliance_table", "content_swap", "content_swap_table",
    "dominant_generators", "extract_features", "generator_only_accuracy", "grad_cam", "heldout_renders",
    "known_images", "mask_area", "mask_share", "normalize_maps", "pick_examples", "probe_model", "probe_run",
    "probe_table", "run_cam_examples", "subclass_probe", "summarize_reliance", "swap_cells", "swap_outcomes",
    "swap_predictions", "swap_summary",
]
