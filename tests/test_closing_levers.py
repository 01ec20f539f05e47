"""Issue 12's levers do what they claim: the `local` backbone's receptive field is a few tens of pixels,
blur/JPEG augmentation changes training images (and only training images), residual_mix puts one crop's
high-pass trace on another subclass's low-pass content."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attrlib import config as config_module
from attrlib.config import Config
from attrlib.data import AUGMENTATIONS, BlurJPEG, ImageDataset, load_config_data
from attrlib.errors import ConfigError
from attrlib.models.backbones import CompactNet, LocalNet, build_backbone, receptive_field
from attrlib.techniques.residual_mix import split_bands, transplant
from attrlib.training import make_loader


def test_receptive_field_is_measured_not_assumed():
    one = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    two = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 5, padding=2))
    assert receptive_field(one) == 3 and receptive_field(two) == 7


def test_local_backbone_sees_a_few_tens_of_pixels():
    local, compact = receptive_field(LocalNet()), receptive_field(CompactNet())
    assert 15 <= local <= 32 < compact, (local, compact)
    net = build_backbone("local")
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, net.feature_dim)
    # a larger image is simply more positions to vote: no layer depends on the input size
    assert net(torch.rand(1, 3, 96, 80)).shape == (1, net.feature_dim)


def test_augment_names_agree_between_config_and_data():
    assert config_module.AUGMENTATIONS == AUGMENTATIONS


def test_bad_augment_fields_are_named():
    with pytest.raises(ConfigError, match="'augment'"):
        Config(augment="mixup")
    with pytest.raises(ConfigError, match="'augment_prob'"):
        Config(augment_prob=1.5)


def test_blur_jpeg_probability_is_what_it_says():
    torch.manual_seed(0)
    x = (torch.rand(3, 64, 64) * 255).to(torch.uint8)
    assert all(torch.equal(BlurJPEG(0.0)(x), x) for _ in range(20))
    changed = sum(not torch.equal(BlurJPEG(1.0)(x), x) for _ in range(20))
    assert changed == 20
    half = sum(not torch.equal(BlurJPEG(0.5)(x), x) for _ in range(400)) / 400
    assert 0.6 < half < 0.85  # 1 - 0.5 * 0.5 = 0.75 of the images are touched (blur or JPEG or both)
    # blur removes high frequencies: the mean absolute Laplacian falls
    lap = lambda im: (im.float()[:, 1:-1, 1:-1] * 4 - im.float()[:, :-2, 1:-1] - im.float()[:, 2:, 1:-1]
                      - im.float()[:, 1:-1, :-2] - im.float()[:, 1:-1, 2:]).abs().mean()
    assert lap(BlurJPEG(1.0)(x)) < 0.8 * lap(x)


def test_augment_changes_training_items_only(tiny_data, tmp_path):
    data = load_config_data(Config(data=str(tiny_data), val_subclass="none", image_size=32))
    frame = data.split("train")
    plain = Config(data=str(tiny_data), image_size=32, val_subclass="none")
    aug = plain.replace(augment="blur_jpeg", augment_prob=1.0)

    def first_batch(config, train):
        torch.manual_seed(0)
        loader = make_loader(frame, data, config, train=train, generator=torch.Generator().manual_seed(0))
        return next(iter(loader))["x"]

    assert not torch.equal(first_batch(plain, True), first_batch(aug, True))
    assert torch.equal(first_batch(plain, False), first_batch(aug, False))
    assert ImageDataset(frame, data, size=32, train=False, augment=BlurJPEG(1.0)).augment is None


def test_transplant_moves_low_band_across_subclasses_only():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 32, 32) * 0.5 + 0.25  # no clamping at [0, 1]
    subclass = torch.arange(64) % 4
    out, mixed = transplant(x, subclass, mix_prob=1.0, sigma=1.0)
    assert 0.6 < float(mixed.float().mean()) < 0.9  # partners of the same subclass (1 in 4) stay unmixed
    assert torch.equal(out[~mixed], x[~mixed])
    low_x, high_x = split_bands(x, 1.0)
    low_out, high_out = split_bands(out, 1.0)
    # a mixed crop keeps its own high band: the trace; its content (low band) is another crop's
    i = int(torch.nonzero(mixed)[0])
    assert torch.corrcoef(torch.stack([high_out[i].flatten(), high_x[i].flatten()]))[0, 1] > 0.8
    assert not torch.allclose(low_out[i], low_x[i], atol=0.02)
    none, mixed0 = transplant(x, subclass, mix_prob=0.0, sigma=1.0)
    assert torch.equal(none, x) and not mixed0.any()
    same, mixed_same = transplant(x, torch.zeros(64, dtype=torch.long), mix_prob=1.0, sigma=1.0)
    assert torch.equal(same, x) and not mixed_same.any()


def test_jpeg_only_augmentation_never_blurs():
    torch.manual_seed(0)
    # a flat image: JPEG keeps it flat (up to rounding), a blur of a flat image too; an impulse shows a blur
    x = torch.full((3, 64, 64), 128, dtype=torch.uint8)
    x[:, 32, 32] = 255
    from attrlib.data import build_augment
    only = build_augment("jpeg", 1.0)
    both = build_augment("blur_jpeg", 1.0)
    assert only.blur is False and both.blur is True
    # with JPEG alone the impulse's neighbourhood keeps a sharp peak more often than with blur as well
    peak = lambda im: float(im[:, 32, 32].float().mean() - im[:, 30, 30].float().mean())
    assert sum(peak(only(x)) for _ in range(30)) > 1.5 * sum(peak(both(x)) for _ in range(30))


def test_srm_per_colour_sees_what_the_channel_sum_cancels():
    from attrlib.models.stems import Stem, stem_channels

    torch.manual_seed(0)
    pattern = torch.randn(1, 1, 32, 32) * 0.05
    # a trace that differs per colour channel and sums to zero over them (a colour-coupled noise, say)
    x = 0.5 + torch.cat([pattern, -pattern, torch.zeros_like(pattern)], dim=1)
    summed, per_colour = Stem("srm").eval(), Stem("srm_rgb").eval()
    assert stem_channels("srm_rgb") == 9 and stem_channels("srm") == 3
    assert float(summed.filter.norm.bias.detach().abs().sum()) == 0  # BatchNorm at init, eval: the residual scaled
    assert float(summed(x).abs().max()) < 1e-4
    assert float(per_colour(x).abs().max()) > 0.05


def test_the_training_order_view_never_augments(tiny_data):
    from attrlib.techniques.base import training_images_in_order

    data = load_config_data(Config(data=str(tiny_data), val_subclass="none", image_size=32))
    config = Config(data=str(tiny_data), image_size=32, val_subclass="none", augment="blur_jpeg", augment_prob=1.0)
    loader = make_loader(data.split("train"), data, config, train=True, generator=torch.Generator().manual_seed(0))
    assert loader.dataset.augment is not None
    view = training_images_in_order(loader, patches=1)
    assert view.dataset.augment is None
    first = [next(iter(view))["x"] for _ in range(2)]
    plain = ImageDataset(data.split("train"), data, size=32, train=False)
    assert torch.equal(first[0], first[1]) and torch.equal(first[0][0], plain[0]["x"])
