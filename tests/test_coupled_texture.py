"""The coupled benchmark configuration (issue 18 §5): benchmark parameter `texture`, a fine texture each subclass
carries in the fingerprint's band, so that content is visible to a high-pass front end too. Off by default (the
default and pipeline benchmarks stay byte-identical: tests/test_nonadditive_trace.py), cached apart, kept by the
oracle's twin, and it does what it says: the images' high band gains the texture's energy, and the texture alone
tells the subclasses apart."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attrlib.cli import build_parser
from attrlib.errors import ConfigError
from attrlib.simulator import synthesize
from attrlib.simulator.families import highpass
from attrlib.simulator.synth import subclass_texture
from attrlib.study.session import variant_twin

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(scale=1 / 1000, size=16, progress=False, trace="pipeline")


def _high_band_rms(root, paths) -> float:
    import torch
    x = torch.from_numpy(np.stack([np.asarray(Image.open(root / p), dtype=np.float64) for p in paths]))
    return float(highpass(x.permute(0, 3, 1, 2)).pow(2).mean().sqrt())


def test_texture_is_a_cached_parameter_of_its_own_the_content_stays_and_the_high_band_gains_its_energy(tmp_path,
                                                                                                     monkeypatch):
    plain = synthesize(tmp_path / "plain", **TINY)
    coupled = synthesize(tmp_path / "coupled", texture=8.0, **TINY)
    pp, pc = (json.loads((r / "benchmark.json").read_text()) for r in (plain, coupled))
    assert "texture" not in pp and pc["texture"] == 8.0 and "fine texture of 8 grey levels" in pc["note"]
    assert {k: v for k, v in pc.items() if k not in ("texture", "note")} == {k: v for k, v in pp.items() if k != "note"}
    frame = pd.read_csv(plain / "manifest.csv", keep_default_na=False)
    assert frame.equals(pd.read_csv(coupled / "manifest.csv", keep_default_na=False))
    assert all((plain / m).read_bytes() == (coupled / m).read_bytes() for m in frame["mask"])  # the same content
    # the knob's effect: about 8 grey levels RMS more in the high band (the texture adds in quadrature, and the
    # pipeline's saturation and high-pass take some of it)
    before, after = _high_band_rms(plain, frame["path"]), _high_band_rms(coupled, frame["path"])
    added = np.sqrt(max(after ** 2 - before ** 2, 0.0))
    assert 4.0 < added < 10.0, (before, after)
    # cached apart both ways; the unbiased twin keeps the texture
    stamp = (coupled / "benchmark.json").stat().st_mtime_ns
    assert synthesize(coupled, texture=8.0, **TINY) == coupled
    assert (coupled / "benchmark.json").stat().st_mtime_ns == stamp
    twin = variant_twin(coupled, "unbiased")
    assert json.loads((twin / "benchmark.json").read_text())["texture"] == 8.0
    again = synthesize(tmp_path / "coupled", **TINY)  # no texture asked: regenerated without it
    assert "texture" not in json.loads((again / "benchmark.json").read_text())
    assert (again / frame["path"][0]).read_bytes() == (plain / frame["path"][0]).read_bytes()
    # the texture draws from streams of its own: with a texture of zeros, every image is the plain benchmark's
    import torch

    import attrlib.simulator.synth as synth

    def no_texture(subclass, n, size, rng):
        rng.standard_normal((n, 1, size + 4, size + 4))  # the draw the texture makes, from its own stream
        return torch.zeros(n, 3, size, size, dtype=torch.float64)
    monkeypatch.setattr(synth, "subclass_texture", no_texture)
    zeros = synthesize(tmp_path / "zeros", texture=8.0, **TINY)
    assert all((zeros / p).read_bytes() == (plain / p).read_bytes() for p in frame["path"])
    # the realistic variant is written without a texture: asking for both is refused
    with pytest.raises(ConfigError, match="'realistic' and 'texture'"):
        synthesize(tmp_path / "both", texture=8.0, realistic=True, **TINY)


def test_each_subclass_s_texture_has_a_spectrum_of_its_own_at_fingerprint_scales():
    names = ["bed", "car", "cat", "military_vehicle"]
    spectra, labels = [], []
    for i, name in enumerate(names):
        t = subclass_texture(name, 12, 32, np.random.default_rng(i)).numpy()[:, 0]
        assert abs(t.mean()) < 0.05 and t.std() == pytest.approx(1.0, abs=0.05)
        power = np.abs(np.fft.fft2(t)) ** 2
        f = np.fft.fftfreq(32)
        assert power[:, np.hypot(f[:, None], f[None, :]) > 1 / 8].sum() / power.sum() > 0.9  # periods under 8 px
        spectra += list(np.log(power.reshape(12, -1) + 1e-6))
        labels += [i] * 12
    spectra, labels = np.array(spectra), np.array(labels)
    # nearest centroid, leave one out: each image's subclass from its texture's spectrum alone
    right = 0
    for j in range(len(labels)):
        keep = np.arange(len(labels)) != j
        centroids = np.stack([spectra[keep & (labels == k)].mean(0) for k in range(len(names))])
        right += int(np.argmin(((centroids - spectra[j]) ** 2).sum(1)) == labels[j])
    assert right / len(labels) > 0.9


def test_a_bad_texture_is_named_and_the_cli_passes_it():
    with pytest.raises(ConfigError, match="'texture'.*0, 64"):
        synthesize("/nonexistent/never-written", texture=-1.0, **TINY)
    args = build_parser().parse_args(["synth", "--trace", "pipeline", "--texture", "6"])
    assert args.texture == 6.0 and args.trace == "pipeline"
    assert build_parser().parse_args(["synth"]).texture == 0.0
