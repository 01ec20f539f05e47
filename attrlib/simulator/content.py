"""Procedural content subclasses of the SIMULATED benchmark: clean images and their object masks.

Each subclass stands in for one of seed 002's real subclasses (horse, face, animal_face, bed, church, cat,
car) or for its held-out one (military_vehicle). A drawing is a sketch, not a photograph: a few soft-edged
shapes (ellipses, boxes, polygons) with a subclass-specific layout and palette over a subclass-specific
background, with position, size, orientation, colours and smooth texture randomised per image.

What the simulation needs from content, and how it is obtained:

- Content is an easy, low-frequency shortcut: an 8x8 thumbnail identifies the subclass (palettes and
  layouts differ; see `attrlib.simulator.stats.thumbnail_check`).
- Content carries no periodic structure at 2, 4 or 8 pixels, where the generator fingerprints live
  (`attrlib.simulator.families`): textures are Gaussian-filtered white noise, never stripes or tiles, and
  shape edges are anti-aliased over about one pixel.
- Content says nothing about the generator: it is drawn from the subclass alone, and every image is given a
  global mean and contrast drawn from one distribution shared by all subclasses, so that no family can be
  told apart by brightness even where family and subclass are confounded (seed 002's biased matrix).

Everything is vectorised over a batch with torch; randomness comes from the numpy Generator passed in, so a
drawing is a pure function of the generator's state.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

# Range of each image's global mean and standard deviation (over pixels and channels, in [0, 1]). Shared by
# every subclass so that brightness and contrast are no cue; kept away from 0 and 1 so that adding a
# fingerprint is rarely clipped.
MEAN_RANGE = (0.40, 0.60)
STD_RANGE = (0.16, 0.22)
CLIP = (0.04, 0.96)


class _Canvas:
    """A batch of n images of side `size` being painted, with per-image random draws."""

    def __init__(self, n: int, size: int, rng: np.random.Generator):
        self.n, self.size, self.rng = n, size, rng
        # pixel centres in [0, 1]; shape (1, S, S) so that per-image parameters (n, 1, 1) broadcast
        t = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        self.y = t.view(1, size, 1).expand(1, size, size)
        self.x = t.view(1, 1, size).expand(1, size, size)
        self.px = 1.0 / size                       # one pixel in normalised units: the edge softness
        self.img = torch.zeros(n, 3, size, size, dtype=torch.float64)
        self.mask = torch.zeros(n, size, size, dtype=torch.float64)

    # --- random draws, one value per image, shaped to broadcast against (n, S, S) ---
    def u(self, lo: float, hi: float) -> torch.Tensor:
        return torch.from_numpy(self.rng.uniform(lo, hi, self.n).astype(np.float64)).view(-1, 1, 1)

    def sign(self) -> torch.Tensor:
        return torch.from_numpy(self.rng.choice([-1.0, 1.0], self.n).astype(np.float64)).view(-1, 1, 1)

    def colour(self, palette: list[tuple[float, float, float]], jitter: float = 0.06) -> torch.Tensor:
        """One colour per image: a random palette entry plus a small random shift; shape (n, 3, 1, 1)."""
        base = np.asarray(palette, dtype=np.float64)[self.rng.integers(0, len(palette), self.n)]
        base = base + self.rng.normal(0.0, jitter, (self.n, 3)).astype(np.float64)
        return torch.from_numpy(np.clip(base, 0.0, 1.0)).view(-1, 3, 1, 1)

    def texture(self, corr: float, amount: float, mono: bool = False) -> torch.Tensor:
        """Smooth random texture (n, 3, S, S), zero mean, std `amount`: white noise under a Gaussian low-pass
        of correlation length `corr` (fraction of the side). A Gaussian spectrum has no periodic peaks."""
        s = self.size
        ch = 1 if mono else 3
        white = torch.from_numpy(self.rng.standard_normal((self.n, ch, s, s)).astype(np.float64))
        fy = torch.fft.fftfreq(s, dtype=torch.float64).view(s, 1)
        fx = torch.fft.rfftfreq(s, dtype=torch.float64).view(1, -1)
        sigma_px = corr * s
        gain = torch.exp(-2 * math.pi ** 2 * sigma_px ** 2 * (fx ** 2 + fy ** 2))
        smooth = torch.fft.irfft2(torch.fft.rfft2(white) * gain, s=(s, s))
        smooth = smooth / smooth.flatten(1).std(dim=1).clamp_min(1e-8).view(-1, 1, 1, 1)
        return amount * smooth.expand(self.n, 3, s, s)

    # --- painting ---
    def soft(self, sdf: torch.Tensor) -> torch.Tensor:
        """Coverage in [0, 1] from a signed distance (negative inside), anti-aliased over about one pixel."""
        return torch.clamp(0.5 - sdf / (1.2 * self.px), 0.0, 1.0)

    def paint(self, alpha: torch.Tensor, colour: torch.Tensor, shade: torch.Tensor | None = None) -> None:
        """Composite a part of the object (coverage `alpha`, colour plus optional shading) and add it to the mask."""
        a = alpha.unsqueeze(1)
        fill = colour if shade is None else (colour + shade).clamp(0, 1)
        self.img = self.img * (1 - a) + fill * a
        self.mask = torch.maximum(self.mask, alpha)

    def fill(self, colour: torch.Tensor) -> None:
        self.img = colour.expand(self.n, 3, self.size, self.size).clone()

    def vertical(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        """A top-to-bottom colour gradient (n, 3, S, S)."""
        w = self.y.unsqueeze(0)
        return top * (1 - w) + bottom * w

    # --- shapes: signed distances (n, S, S) in normalised units ---
    def ellipse(self, cx, cy, rx, ry, angle=0.0) -> torch.Tensor:
        dx, dy = self.x - cx, self.y - cy
        if not (isinstance(angle, float) and angle == 0.0):
            angle = torch.as_tensor(angle)
            ca, sa = torch.cos(angle), torch.sin(angle)
            dx, dy = ca * dx + sa * dy, -sa * dx + ca * dy
        r = torch.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
        return self.soft((r - 1.0) * torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry)))

    def box(self, cx, cy, w, h, angle=0.0, round_=0.0) -> torch.Tensor:
        dx, dy = self.x - cx, self.y - cy
        if not (isinstance(angle, float) and angle == 0.0):
            angle = torch.as_tensor(angle)
            ca, sa = torch.cos(angle), torch.sin(angle)
            dx, dy = ca * dx + sa * dy, -sa * dx + ca * dy
        qx, qy = dx.abs() - (w / 2 - round_), dy.abs() - (h / 2 - round_)
        outside = torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2)
        inside = torch.minimum(torch.maximum(qx, qy), torch.zeros(()))
        return self.soft(outside + inside - round_)

    def polygon(self, pts: list[tuple]) -> torch.Tensor:
        """Convex polygon with vertices in either winding (mirrored drawings reverse it per image)."""
        k = len(pts)
        # twice the signed area: its sign tells the winding, so that "inside" is negative either way
        area = sum(pts[i][0] * pts[(i + 1) % k][1] - pts[(i + 1) % k][0] * pts[i][1] for i in range(k))
        orient = torch.sign(torch.as_tensor(area)).clamp_min(0) * 2 - 1
        d = None
        for i in range(k):
            (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % k]
            ex, ey = x1 - x0, y1 - y0
            norm = torch.sqrt(torch.as_tensor(ex) ** 2 + torch.as_tensor(ey) ** 2).clamp_min(1e-6)
            side = orient * ((self.x - x0) * ey - (self.y - y0) * ex) / norm
            d = side if d is None else torch.maximum(d, side)
        return self.soft(d)

    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Give every image a global mean and contrast drawn from the shared ranges (no brightness cue)."""
        img = self.img
        m = img.mean(dim=(1, 2, 3), keepdim=True)
        sd = img.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        target_m = self.u(*MEAN_RANGE).unsqueeze(1)
        target_sd = self.u(*STD_RANGE).unsqueeze(1)
        img = ((img - m) / sd * target_sd + target_m).clamp(*CLIP)
        return img, (self.mask > 0.5)


# --------------------------------------------------------------------------------------------------------
# Palettes (RGB in [0, 1]). Distinct hues per subclass make the thumbnail shortcut easy, as content is in
# seed 002's real data (faces are skin-toned close-ups, churches grey stone under sky, cars on roads...).
SKY = [(0.55, 0.72, 0.92), (0.70, 0.80, 0.90), (0.45, 0.62, 0.88)]
GRASS = [(0.30, 0.55, 0.20), (0.40, 0.60, 0.25), (0.25, 0.45, 0.18)]


def horse(cv: _Canvas) -> None:
    horizon = cv.u(0.45, 0.60)
    sky, grass = cv.colour(SKY), cv.colour(GRASS)
    ground_edge = cv.soft(cv.y - horizon).unsqueeze(1)
    cv.img = sky * ground_edge + grass * (1 - ground_edge) + cv.texture(0.05, 0.05) * (1 - ground_edge)
    d = cv.sign()  # facing left or right
    cx, cy, s = cv.u(0.42, 0.58), cv.u(0.52, 0.62), cv.u(0.85, 1.15)
    coat = cv.colour([(0.45, 0.28, 0.15), (0.30, 0.18, 0.10), (0.60, 0.42, 0.25), (0.15, 0.12, 0.10)])
    shade = cv.texture(0.08, 0.04, mono=True)
    for lx in (-0.15, -0.09, 0.09, 0.15):
        cv.paint(cv.box(cx + d * lx * s, cy + 0.16 * s, 0.035 * s, 0.22 * s), coat, shade)
    cv.paint(cv.ellipse(cx, cy, 0.21 * s, 0.10 * s), coat, shade)
    cv.paint(cv.box(cx + d * 0.19 * s, cy - 0.10 * s, 0.07 * s, 0.20 * s, angle=d * 0.5), coat, shade)
    cv.paint(cv.ellipse(cx + d * 0.26 * s, cy - 0.19 * s, 0.09 * s, 0.045 * s, angle=d * 0.6), coat, shade)
    cv.paint(cv.box(cx - d * 0.23 * s, cy + 0.03 * s, 0.03 * s, 0.16 * s, angle=-d * 0.3), coat * 0.7)


def face(cv: _Canvas) -> None:
    bg = cv.colour([(0.55, 0.60, 0.62), (0.35, 0.45, 0.50), (0.70, 0.66, 0.60), (0.45, 0.40, 0.48)])
    cv.fill(bg)
    cv.img = cv.img + cv.vertical(torch.zeros(1, 3, 1, 1) + 0.06, torch.zeros(1, 3, 1, 1) - 0.06)
    cx, cy, s = cv.u(0.45, 0.55), cv.u(0.48, 0.56), cv.u(0.9, 1.1)
    skin = cv.colour([(0.93, 0.76, 0.62), (0.80, 0.60, 0.45), (0.55, 0.38, 0.26), (0.98, 0.84, 0.74)])
    hair = cv.colour([(0.10, 0.07, 0.05), (0.35, 0.22, 0.12), (0.70, 0.55, 0.30), (0.25, 0.25, 0.25)])
    cloth = cv.colour([(0.2, 0.3, 0.6), (0.6, 0.2, 0.2), (0.15, 0.15, 0.15), (0.85, 0.85, 0.85)])
    cv.paint(cv.ellipse(cx, 1.02, 0.42 * s, 0.22 * s), cloth)
    cv.paint(cv.ellipse(cx, cy - 0.10 * s, 0.29 * s, 0.26 * s), hair)
    cv.paint(cv.ellipse(cx, cy + 0.03 * s, 0.24 * s, 0.31 * s), skin, cv.texture(0.1, 0.03, mono=True))
    for ex in (-0.1, 0.1):
        cv.paint(cv.ellipse(cx + ex * s, cy - 0.01 * s, 0.045 * s, 0.022 * s), torch.zeros(1, 3, 1, 1) + 0.12)
    cv.paint(cv.ellipse(cx, cy + 0.2 * s, 0.08 * s, 0.025 * s), torch.tensor([0.7, 0.3, 0.3]).view(1, 3, 1, 1))


def animal_face(cv: _Canvas) -> None:
    bg = cv.colour([(0.35, 0.45, 0.25), (0.50, 0.45, 0.35), (0.30, 0.35, 0.30)])
    cv.fill(bg)
    cv.img = cv.img + cv.texture(0.12, 0.06)
    cx, cy, s = cv.u(0.45, 0.55), cv.u(0.52, 0.60), cv.u(0.9, 1.1)
    fur = cv.colour([(0.85, 0.55, 0.25), (0.60, 0.60, 0.60), (0.45, 0.30, 0.20), (0.90, 0.88, 0.82)])
    shade = cv.texture(0.06, 0.05, mono=True)
    cv.paint(cv.polygon([(cx - 0.30 * s, cy - 0.05 * s), (cx - 0.10 * s, cy - 0.22 * s), (cx - 0.26 * s, cy - 0.42 * s)]), fur, shade)
    cv.paint(cv.polygon([(cx + 0.30 * s, cy - 0.05 * s), (cx + 0.26 * s, cy - 0.42 * s), (cx + 0.10 * s, cy - 0.22 * s)]), fur, shade)
    cv.paint(cv.ellipse(cx, cy, 0.33 * s, 0.29 * s), fur, shade)
    cv.paint(cv.ellipse(cx, cy + 0.13 * s, 0.14 * s, 0.10 * s), (fur + 0.25).clamp(0, 1))
    cv.paint(cv.ellipse(cx, cy + 0.07 * s, 0.04 * s, 0.03 * s), torch.zeros(1, 3, 1, 1) + 0.08)
    for ex in (-0.12, 0.12):
        cv.paint(cv.ellipse(cx + ex * s, cy - 0.06 * s, 0.045 * s, 0.04 * s), torch.tensor([0.25, 0.35, 0.1]).view(1, 3, 1, 1))


def bed(cv: _Canvas) -> None:
    wall = cv.colour([(0.90, 0.85, 0.72), (0.80, 0.82, 0.78), (0.85, 0.75, 0.70)])
    floor = cv.colour([(0.50, 0.35, 0.22), (0.60, 0.45, 0.30)])
    split = cv.u(0.55, 0.70)
    edge = cv.soft(cv.y - split).unsqueeze(1)
    cv.img = wall * edge + floor * (1 - edge) + cv.texture(0.08, 0.03)
    cx, cy, s = cv.u(0.42, 0.58), cv.u(0.58, 0.66), cv.u(0.9, 1.1)
    wood = cv.colour([(0.35, 0.22, 0.12), (0.25, 0.18, 0.12), (0.55, 0.40, 0.28)])
    sheet = cv.colour([(0.95, 0.95, 0.95), (0.75, 0.82, 0.92), (0.90, 0.88, 0.80)])
    blanket = cv.colour([(0.30, 0.40, 0.70), (0.70, 0.30, 0.35), (0.40, 0.55, 0.45), (0.85, 0.75, 0.55)])
    cv.paint(cv.box(cx, cy - 0.14 * s, 0.80 * s, 0.32 * s, round_=0.03), wood)
    cv.paint(cv.box(cx, cy + 0.08 * s, 0.86 * s, 0.24 * s, round_=0.02), sheet)
    cv.paint(cv.box(cx + 0.08 * s, cy + 0.11 * s, 0.66 * s, 0.20 * s, round_=0.02), blanket, cv.texture(0.07, 0.04, mono=True))
    for px_ in (-0.2, 0.2):
        cv.paint(cv.ellipse(cx + px_ * s, cy - 0.04 * s, 0.15 * s, 0.06 * s), sheet + 0.03)


def church(cv: _Canvas) -> None:
    sky = cv.colour(SKY + [(0.80, 0.82, 0.85)])
    ground = cv.colour([(0.35, 0.50, 0.25), (0.50, 0.50, 0.48)])
    horizon = cv.u(0.78, 0.88)
    edge = cv.soft(cv.y - horizon).unsqueeze(1)
    cv.img = sky * edge + ground * (1 - edge) + cv.texture(0.15, 0.03)
    cx, s = cv.u(0.40, 0.60), cv.u(0.9, 1.1)
    stone = cv.colour([(0.62, 0.60, 0.56), (0.75, 0.68, 0.55), (0.55, 0.50, 0.48)])
    roof = cv.colour([(0.30, 0.28, 0.30), (0.50, 0.25, 0.18), (0.35, 0.40, 0.38)])
    d = cv.sign()
    base = horizon + 0.02
    shade = cv.texture(0.05, 0.04, mono=True)
    cv.paint(cv.box(cx, base - 0.16 * s, 0.52 * s, 0.32 * s), stone, shade)
    cv.paint(cv.polygon([(cx - 0.28 * s, base - 0.32 * s), (cx + 0.28 * s, base - 0.32 * s), (cx, base - 0.50 * s)]), roof)
    tx = cx + d * 0.30 * s
    cv.paint(cv.box(tx, base - 0.30 * s, 0.14 * s, 0.60 * s), stone, shade)
    cv.paint(cv.polygon([(tx - 0.08 * s, base - 0.60 * s), (tx + 0.08 * s, base - 0.60 * s), (tx, base - 0.85 * s)]), roof)
    cv.paint(cv.box(cx, base - 0.07 * s, 0.08 * s, 0.14 * s, round_=0.03), torch.zeros(1, 3, 1, 1) + 0.15)
    cv.paint(cv.ellipse(tx, base - 0.45 * s, 0.03 * s, 0.03 * s), torch.zeros(1, 3, 1, 1) + 0.2)


def cat(cv: _Canvas) -> None:
    bg = cv.colour([(0.75, 0.55, 0.45), (0.55, 0.35, 0.45), (0.80, 0.72, 0.60), (0.45, 0.35, 0.55)])
    cv.fill(bg)
    cv.img = cv.img + cv.texture(0.1, 0.05) + cv.vertical(torch.zeros(1, 3, 1, 1) - 0.05, torch.zeros(1, 3, 1, 1) + 0.05)
    d = cv.sign()
    cx, cy, s = cv.u(0.42, 0.58), cv.u(0.60, 0.68), cv.u(0.85, 1.1)
    fur = cv.colour([(0.35, 0.35, 0.35), (0.85, 0.55, 0.25), (0.10, 0.10, 0.10), (0.92, 0.92, 0.90)])
    shade = cv.texture(0.05, 0.05, mono=True)
    cv.paint(cv.box(cx - d * 0.26 * s, cy - 0.08 * s, 0.04 * s, 0.26 * s, angle=d * 0.6, round_=0.015), fur, shade)
    cv.paint(cv.ellipse(cx, cy, 0.24 * s, 0.13 * s), fur, shade)
    hx, hy = cx + d * 0.2 * s, cy - 0.15 * s
    cv.paint(cv.polygon([(hx - 0.10 * s, hy - 0.02 * s), (hx - 0.02 * s, hy - 0.08 * s), (hx - 0.09 * s, hy - 0.17 * s)]), fur, shade)
    cv.paint(cv.polygon([(hx + 0.10 * s, hy - 0.02 * s), (hx + 0.09 * s, hy - 0.17 * s), (hx + 0.02 * s, hy - 0.08 * s)]), fur, shade)
    cv.paint(cv.ellipse(hx, hy, 0.11 * s, 0.095 * s), fur, shade)
    for ex in (-0.04, 0.04):
        cv.paint(cv.ellipse(hx + ex * s, hy - 0.01 * s, 0.018 * s, 0.018 * s), torch.tensor([0.6, 0.7, 0.2]).view(1, 3, 1, 1))


def car(cv: _Canvas) -> None:
    sky = cv.colour(SKY)
    road = cv.colour([(0.40, 0.40, 0.42), (0.30, 0.30, 0.32), (0.50, 0.48, 0.45)])
    horizon = cv.u(0.50, 0.60)
    edge = cv.soft(cv.y - horizon).unsqueeze(1)
    cv.img = sky * edge + road * (1 - edge) + cv.texture(0.1, 0.025)
    cx, cy, s = cv.u(0.42, 0.58), cv.u(0.60, 0.68), cv.u(0.9, 1.1)
    paint = cv.colour([(0.80, 0.10, 0.10), (0.10, 0.25, 0.75), (0.95, 0.80, 0.10), (0.95, 0.95, 0.95), (0.08, 0.08, 0.08)])
    d = cv.sign()
    cv.paint(cv.box(cx, cy, 0.74 * s, 0.15 * s, round_=0.05), paint)
    cv.paint(cv.polygon([(cx - d * 0.24 * s, cy - 0.06 * s), (cx + d * 0.18 * s, cy - 0.06 * s),
                         (cx + d * 0.08 * s, cy - 0.19 * s), (cx - d * 0.18 * s, cy - 0.19 * s)]), paint)
    cv.paint(cv.box(cx - d * 0.04 * s, cy - 0.12 * s, 0.30 * s, 0.08 * s, round_=0.02), torch.tensor([0.55, 0.68, 0.80]).view(1, 3, 1, 1))
    for wx in (-0.22, 0.22):
        cv.paint(cv.ellipse(cx + wx * s, cy + 0.08 * s, 0.075 * s, 0.075 * s), torch.zeros(1, 3, 1, 1) + 0.06)
        cv.paint(cv.ellipse(cx + wx * s, cy + 0.08 * s, 0.03 * s, 0.03 * s), torch.zeros(1, 3, 1, 1) + 0.6)


def military_vehicle(cv: _Canvas) -> None:
    """Held out (seed 002's test subclass): a tank in olive or sand camouflage on open ground."""
    sky = cv.colour([(0.75, 0.75, 0.70), (0.62, 0.68, 0.75)])
    ground = cv.colour([(0.72, 0.62, 0.42), (0.40, 0.42, 0.25), (0.55, 0.50, 0.38)])
    horizon = cv.u(0.40, 0.55)
    edge = cv.soft(cv.y - horizon).unsqueeze(1)
    cv.img = sky * edge + ground * (1 - edge) + cv.texture(0.06, 0.05) * (1 - edge)
    cx, cy, s = cv.u(0.42, 0.58), cv.u(0.60, 0.68), cv.u(0.9, 1.1)
    d = cv.sign()
    armour = cv.colour([(0.40, 0.42, 0.25), (0.65, 0.58, 0.40), (0.35, 0.35, 0.28)])
    camo = (cv.texture(0.05, 1.0, mono=True) > 0.3).double() * -0.12  # irregular blobs, not a pattern
    cv.paint(cv.box(cx, cy + 0.09 * s, 0.72 * s, 0.12 * s, round_=0.06), torch.zeros(1, 3, 1, 1) + 0.12)
    cv.paint(cv.box(cx, cy, 0.66 * s, 0.12 * s, round_=0.015), armour, camo)
    cv.paint(cv.box(cx + d * 0.28 * s, cy - 0.10 * s, 0.40 * s, 0.03 * s), armour * 0.8)
    cv.paint(cv.ellipse(cx - d * 0.02 * s, cy - 0.09 * s, 0.16 * s, 0.07 * s), armour, camo)


SUBCLASS_DRAWERS: dict[str, Callable[[_Canvas], None]] = {
    "horse": horse, "face": face, "animal_face": animal_face, "bed": bed, "church": church,
    "cat": cat, "car": car, "military_vehicle": military_vehicle,
}


def draw(subclass: str, n: int, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw n clean images of `subclass`: (images float64 (n, 3, S, S) in [0, 1], masks bool (n, S, S))."""
    cv = _Canvas(n, size, rng)
    SUBCLASS_DRAWERS[subclass](cv)
    return cv.finish()
