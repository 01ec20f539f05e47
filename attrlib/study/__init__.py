"""The study layer, on top of everything else: the numbered notebooks and what serves them.

- `session`: a notebook's parameters resolved once (`session(...) -> Session`: data root, shared Config
  overrides, held-out tuple, seeds, the profile's notebook knobs), and how a profile's data is found
  (`resolve_data`, `unbiased_variant`, `matched_variant`, `is_simulated`, `benchmark_spec`, `parse_heldout`).
- `runner`: `run_study` executes the notebooks with papermill on the project's kernel (`attrlib study`).
- `checks`: the benchmark checks that train (`strength_sweep`, `checks_table`).
- `report`: one static HTML report of an executed study (`attrlib report`).
- `closing`: notebook 11's arms (`ARMS`, `SEEDS_TECHNIQUES`, `COMPETITORS`, `CHECKED_ARMS`, the `SELECTED` label,
  `robustness_arms`), each arm's own model and its oracle (`model_arms`, `model_oracles`, `within_model`), the
  rotations never read while designing (`unexplored`), and each rotation's chosen arm on the non-additive and
  realistic variants (`train_selected`, `variant_tables`).
- `goal`: issue 12's criteria, each judged from the measured tables (`goal_table`).
- `readme`: the results section of docs/results.md from the notebooks' tables and the study's timing
  (`attrlib readme`).
- `open_world`: notebook 12's leave-one-generator-out rotations (`unknown_rotations`, `train_open_world`), its
  jobs (`open_world_jobs`: techniques and notebook 11's arms) and the open-set runs beside the closed-set ones
  (`closed_set_comparison`).
- `selected`: the model a finished study selected (`study_model`) and `attrlib.predict` (`--run` or `--study`).
"""
from .goal import goal_table
from .session import (STUDY_BENCHMARKS, Knobs, Session, benchmark_spec, checks_apply, is_simulated, matched_variant,
                      parse_heldout, resolve_data, session, shown_path, unbiased_variant)

__all__ = ["session", "Session", "Knobs", "parse_heldout", "resolve_data", "unbiased_variant", "matched_variant",
           "is_simulated",
           "benchmark_spec", "checks_apply", "STUDY_BENCHMARKS", "run_study", "StudyError", "notebook_kernel",
           "notebooks_in", "shown_path", "goal_table"]

# The runner (papermill, nbformat, jupyter_client: nbformat's schema validation pulls in jsonschema's format
# checkers, seconds of import) is loaded on first use: every notebook imports this package for `session`, and
# none of them runs the study.
_RUNNER = ("run_study", "StudyError", "notebook_kernel", "notebooks_in")


def __getattr__(name: str):
    if name in _RUNNER:
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
