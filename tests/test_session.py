"""The notebooks' shared preamble: `attrlib.study.session` resolves a parameters cell into a Session (data,
shared Config overrides, held-out tuple, seeds, the profile's notebook knobs), and the notebooks follow the
Jupyter conventions (the project's kernel, a complete language_info, no outputs, typed parameters)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attrlib.config import PROFILES
from attrlib.errors import ConfigError
from attrlib.study import Session, parse_heldout, session
from attrlib.study.session import parse_rotations

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_session_resolves_the_parameters_of_a_notebook(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRLIB_ROOT", str(tmp_path))  # relative folders are the project root's
    s = session(profile="quick", data=str(tiny_data), heldout="military_vehicle, car", seeds=[], runs="r",
                figures="f", results="t", device="cpu", progress=False)
    assert isinstance(s, Session)
    # "a, b" is two leave-one-subclass-out rotations; s.heldout is the first
    assert s.data == tiny_data and s.rotations == (("military_vehicle",), ("car",))
    assert s.heldout == ("military_vehicle",)
    assert s.seeds == PROFILES["quick"]["seeds"]  # none given: the profile's
    assert s.common == dict(data=str(tiny_data), rotations=(("military_vehicle",), ("car",)),
                            runs=str(tmp_path / "r"), device="cpu", on_bad="raise")
    assert (s.figures, s.results) == (str(tmp_path / "f"), str(tmp_path / "t"))
    assert s.config.image_size == PROFILES["quick"]["config"]["image_size"] and s.config.runs == str(tmp_path / "r")
    assert not s.simulated and s.note == "" and s.oracle_data is None  # the user's data: no unbiased twin
    assert "military_vehicle; car" in s._repr_markdown_()
    # none given: the profile's rotations (quick: the seed's held-out subclass); "a+b": one rotation holding out both
    assert session(profile="quick", data=str(tiny_data), progress=False).rotations == (("military_vehicle",),)
    assert session(profile="quick", data=str(tiny_data), heldout="military_vehicle+car",
                   progress=False).rotations == (("military_vehicle", "car"),)
    assert session(profile="quick", data=str(tiny_data), seeds=[3, 4], progress=False).seeds == (3, 4)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_knobs_come_from_the_profile_and_a_notebook_overrides_them(tiny_data, profile):
    s = session(profile=profile, data=str(tiny_data), progress=False)
    assert dict(s.knobs) == PROFILES[profile]["notebook"]
    kept = session(profile=profile, data=str(tiny_data), progress=False, n_boot=0, cam_images=0,
                   sweep_strengths="auto")  # a parameters cell's "0: the profile's"
    assert kept.knobs == s.knobs
    given = session(profile=profile, data=str(tiny_data), progress=False, n_boot=7, sweep_strengths="")
    assert given.knobs.n_boot == given.knobs["n_boot"] == 7 and given.knobs.sweep_strengths == ""


def test_figure_formats_knob_decides_what_save_fig_writes(tiny_data, tmp_path):
    """quick writes PNG only (its smoke run), default PNG and PDF; a notebook may ask for more; PNG is required."""
    import matplotlib.pyplot as plt

    from attrlib import reporting

    def written(name: str) -> list[str]:
        fig = plt.figure(figsize=(2, 2))
        fig.add_subplot().plot([0, 1])
        paths = reporting.save_fig(fig, name, tmp_path)
        plt.close(fig)
        return sorted(p.suffix for p in paths)

    session(profile="quick", data=str(tiny_data), progress=False)
    assert written("01_quick") == [".png"] and not (tmp_path / "01_quick.pdf").exists()
    session(profile="default", data=str(tiny_data), progress=False)
    assert written("01_default") == [".pdf", ".png"] and (tmp_path / "01_default.pdf").stat().st_size > 0
    session(profile="quick", data=str(tiny_data), progress=False, figure_formats="png,svg")
    assert written("01_svg") == [".png", ".svg"]
    for bad in ("pdf", "png,docx"):
        with pytest.raises(ConfigError, match="figure_formats"):
            session(profile="quick", data=str(tiny_data), progress=False, figure_formats=bad)


def test_the_quick_profile_keeps_the_smoke_run_small(tiny_data):
    from attrlib.simulator import DEFAULT_STRENGTH
    from attrlib.study.checks import sweep_points

    quick = session(profile="quick", data=str(tiny_data), progress=False).knobs
    default = session(profile="default", data=str(tiny_data), progress=False).knobs
    thorough = session(profile="thorough", data=str(tiny_data), progress=False).knobs
    assert (quick.n_boot, quick.cam_images, quick.robustness_images, quick.summary_images, quick.cam_per_generator) == (
        200, 12, 12, 48, 1)
    assert (default.n_boot, default.cam_images, default.summary_images, default.cam_per_generator) == (1000, 96, 96, 2)
    assert (thorough.cam_images, thorough.summary_images, thorough.second_config) == (None, None, True)
    assert sweep_points(quick.sweep_strengths) == [0.0, DEFAULT_STRENGTH]  # only the points the checks read
    assert sweep_points(default.sweep_strengths) == []  # the 15-minute default leaves the checks to quick and thorough
    assert sweep_points(thorough.sweep_strengths) == sorted({0.0, 1.0, DEFAULT_STRENGTH})
    assert sweep_points("") == []


def test_figure_arms_chooses_the_techniques_drawn_a_figure_of_their_own(tiny_data):
    from attrlib.config import PROFILES
    from attrlib.techniques import available

    quick = session(profile="quick", data=str(tiny_data), progress=False)
    chosen = PROFILES["quick"]["notebook"]["figure_arms"].split(",")
    assert [t for t in available() if quick.draws_figure(t)] == [t for t in available() if t in chosen]
    assert 0 < len(chosen) < len(available())
    default = session(profile="default", data=str(tiny_data), progress=False)
    assert all(default.draws_figure(t) for t in available())
    mine = session(profile="default", data=str(tiny_data), progress=False, figure_arms=" dfr, jtt ")
    assert [t for t in available() if mine.draws_figure(t)] == [t for t in available() if t in ("dfr", "jtt")]
    assert session(profile="quick", data=str(tiny_data), progress=False, figure_arms=" All ").draws_figure("dfr")
    for bad, says in (("baseline,no_such", "unknown technique.*no_such"), (" , ", "no technique")):
        with pytest.raises(ConfigError, match=f"figure_arms.*{says}"):
            session(profile="quick", data=str(tiny_data), progress=False, figure_arms=bad)


def test_relative_folders_are_the_project_roots_from_any_working_directory(tiny_data, tmp_path, monkeypatch):
    """JupyterLab's kernel works in notebooks/, the study in the root: both mean the root's data/, runs/,
    figures/ and results/ (the nearest folder holding pyproject.toml or .git, or $ATTRLIB_ROOT); a user's
    absolute paths are kept."""
    from attrlib.study.session import project_root, resolve_data

    session_module = sys.modules["attrlib.study.session"]  # the module (attrlib.study.session is the function)

    monkeypatch.delenv("ATTRLIB_ROOT", raising=False)
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "data").symlink_to(tiny_data, target_is_directory=True)
    monkeypatch.chdir(root / "notebooks")
    assert project_root() == root.resolve()
    s = session(profile="quick", data="data", runs="runs", figures="figures", results="results", progress=False)
    assert s.data == root.resolve() / "data"
    assert (s.runs, s.figures, s.results) == tuple(str(root.resolve() / n) for n in ("runs", "figures", "results"))
    assert s.common["runs"] == s.config.runs == s.runs
    # the profile's embedded benchmark (data empty) is made under the root's data/, not notebooks/data/
    made = []
    monkeypatch.setattr(session_module, "synthesize", lambda out, **kw: made.append(Path(out)) or Path(out))
    resolve_data("quick", "")
    assert made == [root.resolve() / "data" / "benchmark-quick"]
    # absolute paths as given, wherever the kernel works
    absolute = session(profile="quick", data=str(tiny_data), runs=str(tmp_path / "elsewhere"), progress=False)
    assert absolute.data == tiny_data and absolute.runs == str(tmp_path / "elsewhere")
    # no marker above: the working directory; ATTRLIB_ROOT overrides both, and must be a folder
    bare = tmp_path / "bare" / "sub"
    bare.mkdir(parents=True)
    assert project_root(bare) == bare.resolve()
    monkeypatch.setenv("ATTRLIB_ROOT", str(bare))
    assert project_root() == bare.resolve()
    monkeypatch.setenv("ATTRLIB_ROOT", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="ATTRLIB_ROOT=.*is not a folder"):
        project_root()


def test_session_fails_on_unknown_profiles_knobs_and_empty_heldout(tiny_data):
    with pytest.raises(ConfigError, match="valid profiles"):
        session(profile="fast", data=str(tiny_data))
    with pytest.raises(ConfigError, match="valid knobs: .*n_boot"):
        session(profile="quick", data=str(tiny_data), n_bootstrap=10)
    with pytest.raises(ConfigError, match="held-out subclass 'boat' .*does not occur.*subclasses present: car, face"):
        session(profile="quick", data=str(tiny_data), heldout="military_vehicle, boat")
    with pytest.raises(ConfigError, match="does not exist"):
        session(profile="quick", data=str(tiny_data / "missing"))


def test_one_parser_of_heldout_for_notebooks_and_cli():
    from attrlib.cli import build_parser

    assert parse_heldout("military_vehicle") == ("military_vehicle",)
    assert parse_heldout(" a, b ,") == parse_heldout(["a", "b"]) == ("a", "b")
    args = build_parser().parse_args(["study", "--heldout", " a, b ,"])
    assert parse_rotations(args.heldout) == (("a",), ("b",)) and parse_rotations("a+b") == (("a", "b"),)
    assert build_parser().parse_args(["bias-table", "x", "--heldout", "a,b"]).heldout == ("a", "b")


def test_the_default_heldout_subclass_comes_from_the_profile(monkeypatch):
    from attrlib.cli import build_parser
    from attrlib.config import Config, HELDOUT, profile, profile_heldout

    assert Config().heldout == HELDOUT == profile_heldout("default") == profile("paper")[0].heldout
    assert build_parser().parse_args(["bias-table", "x"]).heldout == HELDOUT
    assert build_parser().parse_args(["train", "--technique", "baseline"]).heldout is None  # the profile's
    monkeypatch.setitem(PROFILES["quick"], "config", {**PROFILES["quick"]["config"], "heldout": ("car",)})
    assert profile_heldout("quick") == ("car",) == profile("quick")[0].heldout
    with pytest.raises(ConfigError, match="unknown profile"):
        profile_heldout("nope")


def test_attrlib_stays_light_and_offers_session_lazily():
    """A fresh interpreter: `import attrlib` loads neither torch nor the study layer. `attrlib.session` is the
    study's session, loaded on first access: asked here, where both are loaded already (a fresh interpreter
    would spend about 10 CPU s importing them to show it)."""
    code = "import sys, attrlib; print(sorted(m for m in ('torch', 'attrlib.study') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from attrlib import session as lazy

    assert lazy is session and lazy.__module__ == "attrlib.study.session"


# ------------------------------------------------------------------------------------- the notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_open_on_the_project_kernel_unmodified_and_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"] == {"display_name": "attrlib (.venv)", "language": "python", "name": "attrlib"}
    # everything the kernel reports on start, so JupyterLab has nothing to add (and autosave nothing to write)
    info = nb["metadata"]["language_info"]
    assert {"codemirror_mode", "file_extension", "mimetype", "name", "nbconvert_exporter", "pygments_lexer",
            "version"} <= set(info)
    assert info["name"] == "python" and info["pygments_lexer"] == "ipython3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_the_git_filter_commits_notebooks_without_outputs(tmp_path):
    """`make filter` (run by `make lab`) installs nbstripout's git filter into the clone; .gitattributes declares
    it for *.ipynb. A notebook run in JupyterLab (outputs, execution counts) is staged without them, keeping its
    cells' ids, `git status` stays clean when autosave writes outputs again, and the committed notebooks pass
    through the filter unchanged (installing it shows no diff)."""
    import shutil

    import nbformat
    from nbformat.v4 import new_output

    if not (shutil.which("git") and shutil.which("make")):
        pytest.skip("needs git and make")
    repo = tmp_path / "clone"
    repo.mkdir()
    git = lambda *args: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                                       capture_output=True, text=True, check=True).stdout
    git("init", "-q")
    shutil.copy(REPO / ".gitattributes", repo / ".gitattributes")
    venv = Path(sys.executable).parent.parent
    subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "filter", f"VENV={venv}"], cwd=repo, check=True,
                   capture_output=True)
    assert "nbstripout" in git("config", "filter.nbstripout.clean")
    committed = NOTEBOOKS[1]  # 02_baseline, as committed
    nb = nbformat.read(str(committed), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code, 1):  # as JupyterLab leaves it after "run all"
        cell.execution_count = i
        cell.outputs = [new_output("stream", name="stdout", text="val acc 0.5\n")]
    path = repo / committed.name
    nbformat.write(nb, str(path))
    git("add", ".gitattributes", path.name)
    staged = json.loads(git("show", f":{path.name}"))
    staged_code = [c for c in staged["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in staged_code)
    assert [c["id"] for c in staged["cells"]] == [c.id for c in nb.cells]  # --keep-id
    assert json.loads(path.read_text())["cells"][2]["outputs"]  # the working copy keeps its outputs
    git("commit", "-q", "-m", "notebook")
    assert git("show", f"HEAD:{path.name}") == committed.read_text(encoding="utf-8")  # byte for byte
    nbformat.write(nb, str(path))  # autosave writes the outputs again
    assert git("status", "--porcelain") == ""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_one_preamble(path):
    """A title, a parameters cell of typed flat literals, ONE setup cell calling session(...), then its own
    calls: no profile branches, no heldout parsing, no resolve_data in a notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    assert "parameters" in cells[1]["metadata"].get("tags", [])
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert sum("session(" in s for s in sources) == 1 and "session(" in sources[1]
    for text in sources:
        assert 'profile == "' not in text and "heldout.split" not in text and "resolve_data(" not in text
        assert "set_num_threads" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter_with_its_type_and_help(path, monkeypatch):
    import nbformat
    import papermill as pm

    params = pm.inspect_notebook(str(path))
    assert {"profile", "data", "heldout", "runs", "figures", "results", "device", "threads"} <= set(params)
    for name, p in params.items():
        assert p["inferred_type_name"] != "None", f"{path.name}: {name} has no type"
        assert p["help"], f"{path.name}: {name} has no help"
    if path.stem.startswith("02"):  # the command line users run shows the same (one notebook), through click
        from click.testing import CliRunner
        from papermill.cli import papermill

        monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # papermill's CLI sets it: restored after
        result = CliRunner().invoke(papermill, ["--help-notebook", str(path)])
        assert result.exit_code == 0, result.output
        shown = result.output
        assert 'profile: str (default "default")' in shown and "threads: int (default 0)" in shown
    source = nbformat.read(str(path), as_version=4).cells[1].source
    lines = [line for line in source.splitlines() if line.strip()]
    assert all(": " in line.split("=")[0] for line in lines if not line.lstrip().startswith("#"))
    # long help wraps onto comment lines (papermill's help is the first one): nothing to scroll sideways
    assert max(map(len, lines)) <= 100


def test_the_simulation_checks_apply_to_the_default_variant_only(tmp_path, tiny_data):
    from attrlib.errors import ConfigError, DataError
    from attrlib.study import benchmark_spec, checks_apply

    default = tmp_path / "default"
    default.mkdir()
    (default / "benchmark.json").write_text('{"scale": 0.004, "size": 32}')
    realistic = tmp_path / "realistic"
    realistic.mkdir()
    (realistic / "benchmark.json").write_text('{"scale": 0.004, "size": 32, "realistic": {}}')
    assert checks_apply(default) and not checks_apply(realistic) and not checks_apply(tiny_data)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "benchmark.json").write_text('{"scale": 0.0')  # the simulator's one reader names the file
    with pytest.raises(DataError, match=r"broken/benchmark.json cannot be read as the simulator's parameters"):
        checks_apply(broken)
    with pytest.raises(ConfigError, match="realistic variant's checks"):
        benchmark_spec("quick", realistic)
