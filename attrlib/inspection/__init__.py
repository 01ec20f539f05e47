"""Inspection: what a trained model looks at and what its features still know (maps and numbers; the CAM
grids are drawn by `attrlib.reporting`).

    cam       Grad-CAM with captum on one head (GradCam, grad_cam), content reliance against object masks
              (mask_share, content_reliance, content_reliance_table), CAM examples of a run (cam_examples,
              pick_examples, run_cam_examples)
    probe     subclass leakage: a linear probe on frozen features (subclass_probe, probe_run, probe_table)
"""
from .cam import (GradCam, cam_examples, content_reliance, content_reliance_table, grad_cam, mask_area, mask_share,
                  normalize_maps, pick_examples, run_cam_examples, summarize_reliance)
from .probe import extract_features, probe_model, probe_run, probe_table, subclass_probe

__all__ = [
    "GradCam", "cam_examples", "content_reliance", "content_reliance_table",
    "extract_features", "grad_cam", "mask_area", "mask_share", "normalize_maps", "pick_examples", "probe_model",
    "probe_run", "probe_table", "run_cam_examples", "subclass_probe", "summarize_reliance",
]
