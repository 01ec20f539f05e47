"""A notebook's session: its parameters resolved once, in one place.

Every numbered notebook has the same preamble: a parameters cell of flat literals (papermill injects its
overrides after it) and one setup cell,

    s = session(profile=profile, data=data, heldout=heldout, seeds=seeds, runs=runs, figures=figures,
                results=results, device=device, threads=threads, n_boot=n_boot)

which returns a `Session`: the data root (the user's, or the profile's embedded benchmark, made if missing),
the Config overrides every training call shares (`s.common`), the held-out subclasses as a tuple, the
seeds, the simulated-benchmark note, the oracles' data (unbiased, matched), and the notebook knobs of the profile
(`s.knobs`: bootstrap resamples, image caps, sweep strengths...), which live in `attrlib.config.PROFILES`
rather than in `if profile == ...` branches.

Relative paths (data, runs, figures, results, the embedded benchmark's folder) are resolved against the
project's root (`project_root`: ATTRLIB_ROOT, or the nearest folder above the working directory holding
pyproject.toml or .git), not against the kernel's working directory: a notebook opened in JupyterLab (whose
kernel works in notebooks/), run by papermill or by `attrlib study` from the root reads and writes the same
data/, runs/, figures/ and results/, so it reuses the study's finished runs. Absolute paths are kept as given.

Also here: how a profile's data is found (`resolve_data`, `unbiased_variant`, `matched_variant`, `is_simulated`,
`benchmark_spec`) and the one parser of a `heldout` string (`parse_heldout`), which the CLI uses too.
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from inspect import signature
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch
from IPython import get_ipython

from ..simulator import VARIANTS, read_benchmark, synthesize
from ..config import EXPLORED, PROFILES, Config, comma_names, profile as profile_config, profile_heldout
from ..data import eligible_rotations, resolve_rotation
from ..data.sources import discover
from .. import rotation
from ..errors import ConfigError
from ..reporting.html import table_html
from ..reporting.save import set_figure_formats
from ..rotation import Rotation
from ..techniques import available
from ..simulator import SIMULATED_NOTE

# The embedded benchmark each profile studies when no --data is given. `quick` is small enough for the
# test suite; `default` is seed 002's matrix at scale 1/50; `paper` keeps that matrix at a larger size
# (seed 002 resizes to 224; the simulator works at 256 so the resize protocol has something to erase).
STUDY_BENCHMARKS = {
    "quick": dict(out="data/benchmark-quick", scale=1 / 250, size=32),
    "default": dict(out="data/benchmark", scale=1 / 50, size=64),
    "thorough": dict(out="data/benchmark", scale=1 / 50, size=64),  # the default's benchmark, longer protocol
    "claims": dict(out="data/benchmark", scale=1 / 50, size=64),  # the default's benchmark, 5 seeds x 6 rotations
    "paper": dict(out="data/benchmark-paper", scale=1 / 50, size=256),
}

# The project's root: this variable when set, else the nearest folder holding one of the markers, upwards from
# the working directory (the repository: notebooks/ is one level below it), else the working directory itself.
ROOT_ENV = "ATTRLIB_ROOT"
ROOT_MARKERS = ("pyproject.toml", ".git")

# A knob given as one of these takes the profile's value (a parameters cell's "0: the profile's").
_PROFILE_VALUE = (None, 0, "auto")


def project_root(start: str | Path | None = None) -> Path:
    """The folder a notebook's relative paths mean: $ATTRLIB_ROOT when set, else the nearest folder at or above
    `start` (the working directory) that holds pyproject.toml or .git (the repository, also from its notebooks/
    folder), else `start` itself."""
    env = os.environ.get(ROOT_ENV, "").strip()
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise ConfigError(f"{ROOT_ENV}={env!r} is not a folder; set it to the project's root (the folder "
                              "holding data/, runs/, figures/, results/) or unset it")
        return root.resolve()
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return here


def project_path(path: str | os.PathLike) -> Path:
    """`path` as the study means it: an absolute path as given, a relative one under `project_root()`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def shown_path(path: str | os.PathLike) -> str:
    """A path as a notebook shows it: relative to the project's root when under it (no machine paths in a
    report), else as given."""
    path = Path(path)
    try:
        return path.resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)


def parse_rotations(heldout: str | Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """Rotations from a notebook's `heldout`: "a, b" is two rotations (a held out, then b), "a+b" one rotation
    holding out both; an iterable of names is one rotation per name. Empty: () (the profile's rotations)."""
    return rotation.parse_rotations(heldout)


ROTATION_SPECS = ("all", "crossed", "unexplored")  # a notebook's `heldout` may name one instead of subclasses


def profile_rotations(profile: str, root: str | Path, heldout: tuple[str, ...],
                      spec: str | tuple | None = None) -> tuple[tuple[str, ...], ...]:
    """The rotations a profile runs on `root` (its `rotations`: names, "crossed", "all" or "unexplored": all but
    `config.EXPLORED`, the rotations read while notebook 11's arms were designed; `spec` instead of the profile's,
    when given)."""
    if spec is None:
        spec = PROFILES[profile].get("rotations", (heldout[0],) if heldout else profile_heldout(profile))
    if not isinstance(spec, str):
        return tuple((r,) for r in spec)
    frame = discover(root).frame
    if spec in ("all", "unexplored"):
        found = [r for r in eligible_rotations(frame) if spec == "all" or r not in EXPLORED]
        if not found:
            raise ConfigError(f"no subclass of {str(root)!r} can be held out in a rotation (each needs at least "
                              "3 generators that keep training images elsewhere with at least 3 images of it: "
                              "attrlib.data.eligible_rotations)")
        # the profile's own held-out subclass first (military vehicles on the benchmark), as under "crossed":
        # a notebook's first rotation is the one it inspects
        first = tuple(heldout) or profile_heldout(profile)
        first = [first[0]] if len(first) == 1 and first[0] in found else []
        return tuple((r,) for r in first + [r for r in found if r not in first])
    if spec == "crossed":
        first = tuple(heldout) or profile_heldout(profile)
        # the first rotation's validation subclass, as `sweep.plan` resolves it for the runs (`data.resolve_rotation`,
        # cached); the rotations go on without it: each run resolves its own on the data it trains on
        second = resolve_rotation(root, first).val_subclass
        eligible = set(eligible_rotations(frame))
        return (tuple(first),) + (((second,),) if second in eligible and len(first) == 1 else ())
    raise ConfigError(f"profile {profile!r} has rotations={spec!r}; use a tuple of names, 'crossed', 'all' or "
                      "'unexplored'")


def resolve_rotations(profile: str, root: str | Path, heldout: str | Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """The rotations a notebook's (or `attrlib study`'s) `heldout` means on `root`: "all" or "crossed" (a spec,
    as a profile's `rotations`), subclass names (`parse_rotations`), or empty (the profile's). The one resolver:
    the session and the study runner both call it."""
    spec = heldout.strip() if isinstance(heldout, str) and heldout.strip() in ROTATION_SPECS else None
    if spec:
        return profile_rotations(profile, root, (), spec)
    return parse_rotations(heldout) or profile_rotations(profile, root, ())


def parse_heldout(heldout: str | Iterable[str]) -> tuple[str, ...]:
    """The held-out subclasses from "a" or "a, b" (or an iterable of names): a tuple of names.

    The one parser of `heldout`: notebooks (through `session`), `attrlib study` and the CLI use it."""
    names = heldout.split(",") if isinstance(heldout, str) else list(heldout)
    parsed = tuple(str(n).strip() for n in names if str(n).strip())
    if not parsed:
        raise ConfigError(f"heldout {heldout!r} names no subclass; give one or more, comma-separated "
                          f"(e.g. {', '.join(Config.heldout)})")
    return parsed


def resolve_data(profile: str = "default", data: str = "", progress: bool = True,
                 variant: str = "biased") -> Path | None:
    """The data root a notebook works on: the user's `data`, or the profile's embedded benchmark (made if missing).

    variant="unbiased": the same benchmark with the same total spread over every generator x subclass cell,
    in `<out>-unbiased` (the oracle's training set: the baseline trained there is the reference of "gap
    closed"). variant="matched": the instance-matched oracle's, in `<out>-matched` (each generator's biased
    total over every training subclass rendered through the biased cells' instances; see
    `attrlib.simulator.synth`). The user's own data has neither: None.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    if data:
        path = project_path(data)
        if not path.exists():
            raise ConfigError(f"data {str(path)!r} does not exist; give a folder <root>/<generator>/<subclass>/... "
                              "or a manifest CSV, or leave data empty for the embedded benchmark")
        return path if variant == "biased" else variant_twin(path, variant)
    if profile not in STUDY_BENCHMARKS:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(STUDY_BENCHMARKS)}")
    spec = dict(STUDY_BENCHMARKS[profile])
    out = project_path(spec.pop("out") + ("" if variant == "biased" else f"-{variant}"))
    return synthesize(out, progress=progress, variant=variant, **spec)


def unbiased_variant(root: str | Path) -> Path | None:
    """The unbiased twin of an embedded benchmark folder (`<root>-unbiased`, made with the same parameters
    if missing), or None for data that is not the embedded benchmark (a user's own images)."""
    return variant_twin(root, "unbiased")


def matched_variant(root: str | Path) -> Path | None:
    """The instance-matched twin of an embedded benchmark folder (`<root>-matched`), as `unbiased_variant`."""
    return variant_twin(root, "matched")


def variant_twin(root: str | Path, variant: str) -> Path | None:
    """The `variant` twin of an embedded benchmark folder: `<root>-<variant>` made with the same parameters if
    missing (`root` itself when it is that variant), or None for data that is not the embedded benchmark."""
    root = Path(root)
    params = read_benchmark(root)
    if params is None:
        return None
    own = params.get("variant", "biased")
    if own == variant:
        return root
    # a twin's twin sits next to the biased folder (benchmark-matched -> benchmark-unbiased)
    stem = root.name[: -len(own) - 1] if own != "biased" and root.name.endswith(f"-{own}") else root.name
    keys = set(signature(synthesize).parameters) - {"out", "variant", "force", "progress"}
    return synthesize(root.parent / (stem if variant == "biased" else f"{stem}-{variant}"), variant=variant,
                      progress=False, **{k: v for k, v in params.items() if k in keys})


def is_simulated(root: str | Path) -> bool:
    """True when `root` is the embedded benchmark (it carries the simulator's benchmark.json)."""
    return read_benchmark(root) is not None


def checks_apply(root: str | Path) -> bool:
    """True when the simulation checks (a strength sweep of the same benchmark) apply to `root`: the embedded
    benchmark's default variant. Not on real data (no strength knob) nor on the realistic variant (its checks
    are the default variant's: it changes the files, not the fingerprints), nor on the non-additive trace (the
    checks' benchmarks are additive: their numbers would not describe it), nor with a subclass texture (the coupled
    configuration: the checks' benchmarks have none)."""
    params = read_benchmark(root)
    return params is not None and not {"realistic", "trace", "texture"} & set(params)


def benchmark_spec(profile: str, root: str | Path, **execution) -> dict:
    """Keyword arguments for the trainings of `attrlib.study.checks` that match a profile and an embedded
    benchmark.

    The benchmark's own scale, size and seed come from its benchmark.json (so checks run at the size the
    study runs at); the training options are the profile's; `execution` adds runs/device.
    """
    if not checks_apply(root):
        raise ConfigError(f"{str(root)!r} is not the embedded benchmark's default variant: the simulation checks "
                          "need its strength knob (real data has none; the realistic variant's checks are the "
                          "default variant's, run them with data empty)")
    params = read_benchmark(root)
    # the study's benchmark and its unbiased twin are the sweep's points at the default strength: reused, not
    # made again (and their runs are the baseline's and the oracle's seed 0: reused as well)
    reuse = [str(p) for p in (Path(root), unbiased_variant(Path(root))) if p is not None and p.is_dir()]
    # the validation subclass the study's own runs of the first rotation leave out (sweep.train_many), so the
    # checks' runs at the default strength are those runs, reused
    return dict(scale=params["scale"], size=params["size"], instance_spread=params.get("instance_spread", 0.0),
                technique="baseline", reuse=reuse, val_subclass=resolve_rotation(root, Config().heldout).val_subclass,
                data_dir=str(Path(root).parent / "checks"), **PROFILES[profile]["config"], **execution)


def _figure_arms(arms: str) -> list[str]:
    """The techniques of the figure_arms knob, or ["all"] (in any case)."""
    names = comma_names(str(arms))
    return ["all"] if [n.lower() for n in names] == ["all"] else names


class Knobs(dict):
    """A notebook's profile-dependent settings (`PROFILES[profile]["notebook"]`, with the notebook's own
    overrides), read as `s.knobs.n_boot` or `s.knobs["n_boot"]`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no notebook knob {name!r}; the profile's knobs: {', '.join(self)}") from None


@dataclass
class Session:
    """What a notebook works with, resolved from its parameters (see `session`).

    profile:  the profile's name (quick | default | claims | thorough | paper).
    data:     the data root: the user's folder or manifest, or the profile's embedded benchmark.
    heldout:  the held-out subclasses of the first rotation (the seed's: `config.HELDOUT` on the benchmark).
    rotations: the held-out subclass(es) of every leave-one-subclass-out rotation: the notebook's `heldout`
              ("a, b": two rotations), or the profile's (`PROFILES[...]["rotations"]`) when it gives none.
    seeds:    the training seeds: the notebook's, or the profile's when it gives none.
    runs, figures, results: where run folders, figures and tables go (absolute: `project_path`).
    device, threads: the torch device ("auto": the best available) and CPU threads (0: torch's default).
    config:   the profile's Config with the shared overrides (`common`) applied, e.g. `s.config.image_size`.
    simulated, note: whether `data` is the embedded benchmark, and the note every figure of it carries
              ("" on the user's data).
    knobs:    the profile's notebook settings with the notebook's overrides (`Knobs`).
    """

    profile: str
    data: Path
    heldout: tuple[str, ...]
    rotations: tuple[tuple[str, ...], ...]
    seeds: tuple[int, ...]
    runs: str
    figures: str
    results: str
    device: str
    threads: int
    on_bad: str
    config: Config
    simulated: bool
    note: str
    knobs: Knobs = field(default_factory=Knobs)

    @property
    def common(self) -> dict[str, Any]:
        """What every training call of a notebook shares (`attrlib.sweep.train_many`): the rotations and the Config
        overrides data, runs, device, on_bad."""
        return dict(data=str(self.data), rotations=self.rotations, runs=self.runs, device=self.device,
                    on_bad=self.on_bad)

    def draws_figure(self, technique: str) -> bool:
        """Whether notebooks 08 and 10 draw `technique`'s own figure (its CAM grid, its LLR chart): the
        `figure_arms` knob, "all" or technique names."""
        arms = _figure_arms(self.knobs.get("figure_arms", "all"))
        return arms == ["all"] or technique in arms

    @cached_property
    def oracle_data(self) -> Path | None:
        """The oracle's training data: the unbiased twin of the embedded benchmark (made on first use if
        missing; `attrlib study` makes it before any notebook), or None on the user's own data."""
        return unbiased_variant(self.data)

    @cached_property
    def matched_data(self) -> Path | None:
        """The instance-matched oracle's training data (`matched_variant`, made on first use if missing), or
        None on the user's own data."""
        return matched_variant(self.data)

    def _repr_markdown_(self) -> str:
        seeds = ", ".join(map(str, self.seeds))
        rotations = "; ".join(Rotation(r).key for r in self.rotations)
        line = (f"**Profile** `{self.profile}` · **data** `{shown_path(self.data)}` · **held out (rotations)** "
                f"{rotations} · **seeds** {seeds} · **device** `{self.device}`")
        return line + (f"\n\n*{self.note}*" if self.note else "")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as a notebook shows it: its category and message, without the path and the source line of
    the code that raised it (a machine's path in every executed copy and report page)."""
    print(f"{category.__name__}: {message}", file=file or sys.stderr)


def notebook_output() -> None:
    """In a Jupyter kernel (JupyterLab, papermill, `attrlib study`), make a notebook's visible output its
    figures, tables and a few lines of text: every displayed DataFrame as `attrlib.reporting.html.table_html`
    (a narrow headline, the whole table collapsed below it, numbers rounded to what the intervals support),
    every warning as its category and message. Outside a kernel: nothing. `session` calls it."""
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    warnings.showwarning = _show_warning
    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, table_html)


def session(profile: str = "default", data: str = "", heldout: str | Iterable[str] = "",
            seeds: Iterable[int] = (), runs: str = "runs", figures: str = "figures", results: str = "results",
            device: str = "auto", threads: int = 0, on_bad: str = "raise", progress: bool = True,
            **knobs: Any) -> Session:
    """Resolve a notebook's parameters into a `Session` (the shared setup cell of every notebook).

    In a kernel, displayed tables and warnings take the report's form (`notebook_output`). Relative `data`,
    `runs`, `figures` and `results` are under the project's root (`project_path`), whatever the working
    directory. Makes the profile's embedded benchmark when `data` is empty and it is missing; sets torch's
    CPU threads when `threads` > 0. `knobs` override the profile's notebook settings (`PROFILES[profile]["notebook"]`);
    a knob given as 0, None or "auto" keeps the profile's value. An unknown profile or knob fails and lists
    the valid ones.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    defaults = PROFILES[profile].get("notebook", {})
    unknown = sorted(set(knobs) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown notebook knob(s) {', '.join(unknown)}; valid knobs: {', '.join(defaults)} "
                          "(attrlib.config.PROFILES[...]['notebook'])")
    if int(threads) < 0:
        raise ConfigError(f"threads={threads} must be 0 (torch's default) or more")
    chosen = Knobs({k: v if knobs.get(k, None) in _PROFILE_VALUE else knobs[k] for k, v in defaults.items()})
    top = chosen.get("ensemble_top", 1)
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ConfigError(f"notebook knob 'ensemble_top' is {top!r}; give a positive integer, the number of rule (b)'s "
                          "best arms notebook 11 averages (0: the profile's)")
    try:  # what every save_fig of this notebook writes
        set_figure_formats(chosen.figure_formats)
    except ValueError as e:
        raise ConfigError(f"notebook knob figure_formats: {e}") from None
    if _figure_arms(chosen.get("figure_arms", "all")) != ["all"]:
        unknown = sorted(set(_figure_arms(chosen.figure_arms)) - set(available()))
        if unknown or not _figure_arms(chosen.figure_arms):
            raise ConfigError(f"notebook knob figure_arms={chosen.figure_arms!r}: "
                              + (f"unknown technique(s) {', '.join(unknown)}" if unknown else "no technique")
                              + f"; give 'all' or comma-separated names of: {', '.join(available())}")
    if threads:
        torch.set_num_threads(int(threads))
    notebook_output()
    root = resolve_data(profile, data, progress=progress)
    runs, figures, results = (str(project_path(p)) for p in (runs, figures, results))
    rotations = resolve_rotations(profile, root, heldout)
    present = set(discover(root).frame["subclass"])
    for name in sorted({n for r in rotations for n in r} - present):
        raise ConfigError(f"held-out subclass {name!r} (parameter heldout) does not occur in {str(root)!r}; "
                          f"subclasses present: {', '.join(sorted(present))}")
    held = rotations[0]
    config, profile_seeds = profile_config(profile, data=str(root), heldout=held, runs=runs, device=device,
                                           on_bad=on_bad)
    simulated = is_simulated(root)
    return Session(
        profile=profile, data=root, heldout=held, rotations=rotations, seeds=tuple(int(s) for s in seeds) or profile_seeds,
        runs=runs, figures=figures, results=results, device=device, threads=int(threads), on_bad=on_bad, config=config,
        simulated=simulated, note=SIMULATED_NOTE if simulated else "",
        knobs=chosen)
