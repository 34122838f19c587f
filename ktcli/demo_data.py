"""The built-in demo dataset: 20 synthetic fine-grained species, CUB's layout.

Each species is a combination of five local parts: head shape, head colour,
wing pattern, tail shape and leg colour. The 20 species are chosen so that

* every species differs from its nearest other species in exactly two parts
  (and from each of at least two others in two parts);
* every value of every part is shared by six or seven species, so no single
  part identifies a species, and every combination of values of any two
  parts occurs, so no part can stand in for another;
* any two species differ in at least two of the four body regions (head,
  wing, tail, legs), so a species stays identifiable when one region is
  hidden.

The creatures are drawn with varying position, scale, rotation and
orientation, with colour and shape jitter, on cluttered textured backgrounds
whose colours and distractor shapes resemble the creatures' own. In a share
of the images one body region is occluded, so a model that relies on a single
part fails on those images.

The dataset is written in the on-disk layout of CUB-200-2011 and is read by
mmpretrain's ``CUB`` class given ``metainfo=dict(classes=list(DEMO_CLASSES))``.
"""
import json
import math
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PART_VALUES: dict[str, tuple[str, ...]] = {
    'head_shape': ('round', 'crested', 'pointed'),
    'head_colour': ('red', 'blue', 'yellow'),
    'wing_pattern': ('plain', 'barred', 'spotted'),
    'tail_shape': ('fan', 'fork', 'spike'),
    'leg_colour': ('black', 'orange', 'pale'),
}

# The parts of each species in label order, in the order of PART_VALUES.
_SPECIES: tuple[tuple[str, str, str, str, str], ...] = (
    ('round', 'red', 'plain', 'fork', 'pale'),
    ('round', 'red', 'barred', 'spike', 'orange'),
    ('round', 'blue', 'plain', 'fan', 'pale'),
    ('round', 'blue', 'barred', 'fork', 'orange'),
    ('round', 'blue', 'spotted', 'fork', 'black'),
    ('round', 'yellow', 'plain', 'fan', 'orange'),
    ('crested', 'red', 'barred', 'spike', 'pale'),
    ('crested', 'red', 'spotted', 'fan', 'black'),
    ('crested', 'red', 'spotted', 'fork', 'pale'),
    ('crested', 'blue', 'plain', 'spike', 'black'),
    ('crested', 'yellow', 'plain', 'fan', 'black'),
    ('crested', 'yellow', 'barred', 'fork', 'pale'),
    ('crested', 'yellow', 'spotted', 'fork', 'orange'),
    ('pointed', 'red', 'barred', 'fan', 'black'),
    ('pointed', 'blue', 'plain', 'spike', 'orange'),
    ('pointed', 'blue', 'barred', 'fan', 'orange'),
    ('pointed', 'blue', 'spotted', 'spike', 'black'),
    ('pointed', 'yellow', 'plain', 'fork', 'orange'),
    ('pointed', 'yellow', 'barred', 'fan', 'pale'),
    ('pointed', 'yellow', 'spotted', 'spike', 'pale'),
)

DEMO_CLASSES: tuple[str, ...] = tuple(
    f'{head}-{colour}-{pattern}-{tail}tail-{legs}leg'
    for head, colour, pattern, tail, legs in _SPECIES)

MANIFEST_NAME = 'kt_demo.json'
JPEG_QUALITY = 92
# Bump when the drawing changes, so that older datasets are regenerated.
_GENERATOR_VERSION = 1
_GENERATOR_NAME = 'kt demo dataset'
_LAYOUT_FILES = ('images.txt', 'image_class_labels.txt',
                 'train_test_split.txt', 'classes.txt')
_OCCLUDABLE_REGIONS = ('head', 'wing', 'tail', 'legs')

Colour = tuple[int, int, int]
Point = tuple[float, float]

_HEAD_COLOURS: dict[str, Colour] = {
    'red': (205, 40, 35), 'blue': (40, 85, 205), 'yellow': (235, 200, 40)}
_LEG_COLOURS: dict[str, Colour] = {
    'black': (30, 28, 28), 'orange': (240, 125, 25), 'pale': (235, 232, 218)}
_BODY_COLOURS: tuple[Colour, ...] = (
    (140, 110, 80), (120, 120, 115), (110, 120, 80), (190, 165, 120),
    (95, 100, 115), (160, 140, 130))
_BACKGROUND_COLOURS: tuple[Colour, ...] = (
    (70, 100, 50), (110, 140, 70), (50, 80, 60), (120, 90, 60),
    (150, 120, 80), (130, 130, 125), (90, 90, 95), (150, 175, 200),
    (200, 185, 150)) + _BODY_COLOURS
_BILL_COLOUR: Colour = (60, 55, 50)
_PART_COLOURS: tuple[Colour, ...] = (*_HEAD_COLOURS.values(),
                                      *_LEG_COLOURS.values())
_TWIG_COLOURS: tuple[Colour, ...] = (*_PART_COLOURS, (90, 65, 40))
_SHARD_COLOURS: tuple[Colour, ...] = (*_PART_COLOURS, *_BODY_COLOURS)
_DISTRACTOR_KINDS = ('leaf', 'twig', 'berry', 'shard')

# Creatures are drawn facing +x in canonical units around _CREATURE_CENTRE;
# _CREATURE_LENGTH is the tail-tip to bill-tip span they roughly have.
_CREATURE_CENTRE: Point = (100.0, 100.0)
_CREATURE_LENGTH = 165.0
# Images are drawn at this multiple of their size, then box-downsampled.
_SUPERSAMPLING = 2


def species_parts(label: int) -> dict[str, str]:
    """Return the parts of a demo species.

    Args:
        label: The 0-based class label, an index into ``DEMO_CLASSES``.

    Returns:
        A dict from part name (the keys of ``PART_VALUES``) to its value.
    """
    if not 0 <= label < len(_SPECIES):
        raise ValueError(
            f'label must be in [0, {len(_SPECIES)}), got {label}')
    return dict(zip(PART_VALUES, _SPECIES[label], strict=True))


@dataclass(frozen=True)
class _Anatomy:
    """The jittered geometry of one creature, in canonical units."""

    body_x: float
    body_y: float
    body_rx: float
    body_ry: float
    head_x: float
    head_y: float
    head_r: float
    bill_length: float
    crest_heights: tuple[float, ...]
    wing_x: float
    wing_y: float
    wing_rx: float
    wing_ry: float
    wing_tilt: float
    wing_bar_shift: float
    wing_spot_shifts: tuple[Point, ...]
    tail_x: float
    tail_y: float
    tail_angle: float
    tail_length: float
    leg_xs: tuple[float, float]
    leg_top: float
    knee_shift: float


@dataclass(frozen=True)
class _Colours:
    """The jittered colours of one creature."""

    body: Colour
    wing: Colour
    head: Colour
    legs: Colour


# Spot centres of the spotted wing pattern, in wing-radius units.
_WING_SPOTS: tuple[Point, ...] = (
    (-0.6, -0.2), (-0.3, 0.35), (-0.05, -0.35), (0.2, 0.25), (0.5, -0.2),
    (0.7, 0.25))


def _sample_anatomy(rng: random.Random) -> _Anatomy:
    """Sample a creature's geometry with small shape jitter."""
    body_x, body_y = 92.0, 100.0
    body_rx = 40.0 * rng.uniform(0.9, 1.1)
    body_ry = 22.0 * rng.uniform(0.9, 1.1)
    head_r = 14.0 * rng.uniform(0.9, 1.1)
    return _Anatomy(
        body_x=body_x,
        body_y=body_y,
        body_rx=body_rx,
        body_ry=body_ry,
        head_x=body_x + 0.88 * body_rx + 0.35 * head_r,
        head_y=body_y - 0.75 * body_ry + rng.uniform(-3.0, 3.0),
        head_r=head_r,
        bill_length=rng.uniform(0.85, 1.15),
        crest_heights=tuple(12.0 * rng.uniform(0.75, 1.25) for _ in range(3)),
        wing_x=body_x - 6.0 + rng.uniform(-3.0, 3.0),
        wing_y=body_y - 3.0 + rng.uniform(-2.0, 2.0),
        wing_rx=0.72 * body_rx,
        wing_ry=0.62 * body_ry,
        wing_tilt=rng.uniform(3.0, 12.0),
        wing_bar_shift=rng.uniform(-0.05, 0.05),
        wing_spot_shifts=tuple(
            (rng.uniform(-0.07, 0.07), rng.uniform(-0.07, 0.07))
            for _ in _WING_SPOTS),
        tail_x=body_x - 0.85 * body_rx,
        tail_y=body_y - 0.1 * body_ry,
        tail_angle=188.0 + rng.uniform(-12.0, 12.0),
        tail_length=32.0 * rng.uniform(0.85, 1.15),
        leg_xs=(body_x - 10.0 + rng.uniform(-3.0, 3.0),
                body_x + 8.0 + rng.uniform(-3.0, 3.0)),
        leg_top=body_y + 0.75 * body_ry,
        knee_shift=rng.uniform(-4.0, 4.0),
    )


def _jitter(colour: Colour, rng: random.Random,
            sigma: float = 12.0) -> Colour:
    """Add per-channel Gaussian noise to a colour."""
    return tuple(min(255, max(0, int(value + rng.gauss(0.0, sigma))))
                 for value in colour)


def _shade(colour: Colour, factor: float) -> Colour:
    """Scale a colour's brightness."""
    return tuple(int(min(255.0, v * factor)) for v in colour)


def _sample_colours(parts: dict[str, str],
                    rng: random.Random) -> _Colours:
    """Sample a creature's colours: its species' part colours, jittered."""
    body = _jitter(rng.choice(_BODY_COLOURS), rng)
    return _Colours(
        body=body,
        wing=_shade(body, rng.uniform(0.55, 0.75)),
        head=_jitter(_HEAD_COLOURS[parts['head_colour']], rng),
        legs=_jitter(_LEG_COLOURS[parts['leg_colour']], rng),
    )


def _rotate(x: float, y: float, degrees: float) -> Point:
    """Rotate a vector by an angle in degrees (clockwise on screen)."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    return x * cos - y * sin, x * sin + y * cos


def _polar(x: float, y: float, radius: float, degrees: float) -> Point:
    """Return the point at a distance and screen angle from (x, y)."""
    dx, dy = _rotate(radius, 0.0, degrees)
    return x + dx, y + dy


def _steps(start: float, stop: float, count: int) -> list[float]:
    """Return ``count`` evenly spaced values from start to stop inclusive."""
    step = (stop - start) / (count - 1)
    return [start + index * step for index in range(count)]


_UNIT_CIRCLE: tuple[Point, ...] = tuple(
    (math.cos(2.0 * math.pi * k / 28), math.sin(2.0 * math.pi * k / 28))
    for k in range(28))


def _ellipse_points(cx: float, cy: float, rx: float, ry: float,
                    tilt: float = 0.0) -> list[Point]:
    """Return the vertices of a (tilted) ellipse as a 28-sided polygon."""
    tilt_rad = math.radians(tilt)
    cos, sin = math.cos(tilt_rad), math.sin(tilt_rad)
    return [(cx + rx * u * cos - ry * v * sin,
             cy + rx * u * sin + ry * v * cos) for u, v in _UNIT_CIRCLE]


class _Painter:
    """Draws shapes given in canonical units through a similarity transform.

    A canonical point ``p`` is drawn at ``centre + scale * R @ M @ (p - c)``,
    with ``c`` the creature centre, ``R`` the rotation by ``angle`` degrees
    and ``M`` the mirror of x when ``flip``.
    """

    def __init__(self, image: Image.Image, scale: float, angle: float,
                 flip: bool, centre: Point) -> None:
        self._draw = ImageDraw.Draw(image)
        self._scale = scale
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        mirror = -1.0 if flip else 1.0
        self._xx, self._xy = scale * mirror * cos, -scale * sin
        self._yx, self._yy = scale * mirror * sin, scale * cos
        centre_x, centre_y = _CREATURE_CENTRE
        self._x0 = centre[0] - self._xx * centre_x - self._xy * centre_y
        self._y0 = centre[1] - self._yx * centre_x - self._yy * centre_y

    def _pixels(self, points: Sequence[Point]) -> list[Point]:
        return [(self._x0 + self._xx * x + self._xy * y,
                 self._y0 + self._yx * x + self._yy * y) for x, y in points]

    def polygon(self, points: Sequence[Point], fill: Colour | int) -> None:
        """Fill a polygon."""
        self._draw.polygon(self._pixels(points), fill=fill)

    def circle(self, cx: float, cy: float, r: float,
               fill: Colour | int) -> None:
        """Fill a circle."""
        ((x, y),) = self._pixels([(cx, cy)])
        radius = r * self._scale
        self._draw.ellipse((x - radius, y - radius, x + radius, y + radius),
                           fill=fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float,
                fill: Colour | int, tilt: float = 0.0) -> None:
        """Fill an ellipse, optionally tilted."""
        self.polygon(_ellipse_points(cx, cy, rx, ry, tilt), fill)

    def line(self, points: Sequence[Point], width: float,
             fill: Colour | int) -> None:
        """Draw a polyline whose width is given in canonical units."""
        self._draw.line(self._pixels(points), fill=fill,
                        width=max(1, round(width * self._scale)),
                        joint='curve')


def _draw_legs(painter: _Painter, body: _Anatomy, colour: Colour) -> None:
    """Draw two legs with three toes each below the body."""
    for leg_x in body.leg_xs:
        knee = (leg_x + body.knee_shift, body.leg_top + 12.0)
        foot = (leg_x + 3.0, body.leg_top + 23.0)
        painter.line([(leg_x, body.leg_top), knee, foot], 6.5, colour)
        for toe_angle, toe_length in ((-20.0, 7.0), (20.0, 7.0),
                                      (160.0, 4.0)):
            painter.line([foot, _polar(*foot, toe_length, toe_angle)], 3.5,
                         colour)


def _draw_tail(painter: _Painter, body: _Anatomy, shape: str,
               colour: Colour) -> None:
    """Draw a fan-, fork- or spike-shaped tail behind the body."""
    base = (body.tail_x, body.tail_y)
    length, angle = body.tail_length, body.tail_angle
    if shape == 'fan':
        arc = [_polar(*base, length, angle + spread)
               for spread in _steps(-34.0, 34.0, 9)]
        outline = [_polar(*base, 6.0, angle - 90.0), *arc,
                   _polar(*base, 6.0, angle + 90.0)]
    elif shape == 'fork':
        outline = [_polar(*base, 6.0, angle - 90.0),
                   _polar(*base, 1.2 * length, angle - 19.0),
                   _polar(*base, 0.55 * length, angle),
                   _polar(*base, 1.2 * length, angle + 19.0),
                   _polar(*base, 6.0, angle + 90.0)]
    else:
        outline = [_polar(*base, 8.0, angle - 90.0),
                   _polar(*base, 1.3 * length, angle),
                   _polar(*base, 8.0, angle + 90.0)]
    painter.polygon(outline, colour)


def _draw_wing(painter: _Painter, body: _Anatomy, pattern: str,
               colour: Colour) -> None:
    """Draw the wing with a plain, barred or spotted pattern."""
    painter.ellipse(body.wing_x, body.wing_y, body.wing_rx, body.wing_ry,
                    colour, body.wing_tilt)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    mark = (232, 226, 206) if luminance < 105.0 else (28, 26, 26)

    def on_wing(u: float, v: float) -> Point:
        dx, dy = _rotate(u * body.wing_rx, v * body.wing_ry, body.wing_tilt)
        return body.wing_x + dx, body.wing_y + dy

    if pattern == 'barred':
        for u in _steps(-0.55 + body.wing_bar_shift,
                        0.55 + body.wing_bar_shift, 4):
            half = 0.8 * math.sqrt(1.0 - u * u)
            painter.line([on_wing(u, -half), on_wing(u, half)], 5.0, mark)
    elif pattern == 'spotted':
        for (u, v), (du, dv) in zip(_WING_SPOTS, body.wing_spot_shifts,
                                    strict=True):
            painter.circle(*on_wing(u + du, v + dv), 4.2, mark)


def _draw_head(painter: _Painter, body: _Anatomy, shape: str,
               colour: Colour) -> None:
    """Draw a round, crested or pointed head with its bill and eye."""
    x, y, r = body.head_x, body.head_y, body.head_r
    if shape == 'crested':
        bases = [_polar(x, y, 0.95 * r, a)
                 for a in (-165.0, -132.0, -100.0, -68.0)]
        tips = [_polar(x, y, r + height, a) for a, height in
                zip((-150.0, -118.0, -86.0), body.crest_heights, strict=True)]
        outline = [bases[0]]
        for tip, base in zip(tips, bases[1:], strict=True):
            outline += [tip, base]
        painter.polygon([*outline, (x, y)], _shade(colour, 0.85))
    if shape == 'pointed':
        back = [_polar(x, y, r, a) for a in _steps(-70.0, -290.0, 14)]
        tip = (x + 2.0 * r, y + 0.1 * r)
        painter.polygon([*back, tip], colour)
        bill = [(x + 1.6 * r, y - 2.0), (x + 1.6 * r, y + 3.0),
                (tip[0] + 12.0 * body.bill_length, tip[1] + 1.0)]
    else:
        painter.circle(x, y, r, colour)
        bill = [(x + 0.8 * r, y - 0.25 * r), (x + 0.8 * r, y + 0.3 * r),
                (x + r + 9.0 * body.bill_length, y + 0.05 * r)]
    painter.polygon(bill, _BILL_COLOUR)
    eye_x, eye_y = x + 0.3 * r, y - 0.2 * r
    painter.circle(eye_x, eye_y, 3.6, (240, 240, 235))
    painter.circle(eye_x, eye_y, 2.2, (15, 15, 15))


def _draw_creature(painter: _Painter, parts: dict[str, str], body: _Anatomy,
                   colours: _Colours) -> None:
    """Draw a creature's legs, tail, body, wing and head, back to front."""
    _draw_legs(painter, body, colours.legs)
    _draw_tail(painter, body, parts['tail_shape'], colours.wing)
    painter.ellipse(body.body_x, body.body_y, body.body_rx, body.body_ry,
                    colours.body)
    _draw_wing(painter, body, parts['wing_pattern'], colours.wing)
    _draw_head(painter, body, parts['head_shape'], colours.head)


def _draw_occluder(painter: _Painter, body: _Anatomy, region: str) -> None:
    """Fill the area that covers one body region (on a mask)."""
    if region == 'head':
        painter.ellipse(body.head_x + 0.45 * body.head_r,
                        body.head_y - 0.2 * body.head_r,
                        1.9 * body.head_r + 10.0, 1.6 * body.head_r + 8.0,
                        255)
    elif region == 'wing':
        painter.ellipse(body.wing_x, body.wing_y, 1.2 * body.wing_rx,
                        1.4 * body.wing_ry, 255, body.wing_tilt)
    elif region == 'tail':
        x, y = _polar(body.tail_x, body.tail_y, 0.6 * body.tail_length,
                      body.tail_angle)
        painter.circle(x, y, 0.85 * body.tail_length, 255)
    else:
        left, right = min(body.leg_xs) - 9.0, max(body.leg_xs) + 14.0
        top, bottom = body.leg_top - 2.0, body.leg_top + 30.0
        painter.polygon([(left, top), (right, top), (right, bottom),
                         (left, bottom)], 255)


def _interpolation_matrix(size: int, cells: int) -> np.ndarray:
    """Return the (size, cells + 1) matrix that smoothly upsamples a grid.

    Row ``i`` blends the two grid values around position ``i`` with
    smoothstep weights, so ``M @ grid @ M.T`` is a smooth size x size field.
    """
    position = np.linspace(0.0, cells, size, dtype=np.float32)
    lower = np.minimum(position.astype(np.int64), cells - 1)
    fraction = position - lower
    upper_weight = fraction * fraction * (3.0 - 2.0 * fraction)
    matrix = np.zeros((size, cells + 1), dtype=np.float32)
    rows = np.arange(size)
    matrix[rows, lower] = 1.0 - upper_weight
    matrix[rows, lower + 1] = upper_weight
    return matrix


def _smooth_noise(rng: np.random.Generator, count: int, size: int,
                  cells: int) -> np.ndarray:
    """Return ``count`` smooth size x size noise fields, each scaled to [0, 1].

    Args:
        rng: The random generator.
        count: The number of fields.
        size: The side of each field.
        cells: The number of noise cells along a side (the blotch scale).

    Returns:
        A float32 array of shape (count, size, size).
    """
    matrix = _interpolation_matrix(size, cells)
    grid = rng.random((count, cells + 1, cells + 1), dtype=np.float32)
    field = matrix @ grid @ matrix.T
    low = field.min(axis=(1, 2), keepdims=True)
    high = field.max(axis=(1, 2), keepdims=True)
    return (field - low) / np.maximum(high - low, 1e-6)


def _textures(rng: np.random.Generator, count: int,
              size: int) -> np.ndarray:
    """Return a batch of grainy, blotchy textures in natural colours.

    Each texture blends two jittered background colours through smooth
    noise of a random blotch scale and adds grain of a random strength.

    Args:
        rng: The random generator.
        count: The number of textures.
        size: The side of each texture, in pixels.

    Returns:
        A uint8 array of shape (count, size, size, 3).
    """
    palette = np.asarray(_BACKGROUND_COLOURS, dtype=np.float32)
    colours = (palette[rng.integers(len(palette), size=(count, 2))]
               + rng.normal(0.0, 15.0, (count, 2, 3)).astype(np.float32))
    first = colours[:, 0, :, None, None]
    second = colours[:, 1, :, None, None]
    blotch_weight = rng.random((count, 1, 1), dtype=np.float32)
    coarse = (blotch_weight * _smooth_noise(rng, count, size, 2)
              + (1.0 - blotch_weight) * _smooth_noise(rng, count, size, 5))
    fine = _smooth_noise(rng, count, size, max(4, size // 6))
    mix = np.clip(coarse + 0.4 * (fine - 0.5), 0.0, 1.0)[:, None]
    grain = rng.random((count, 1, size, size), dtype=np.float32)
    grain -= 0.5
    grain *= rng.uniform(20.0, 50.0, (count, 1, 1, 1)).astype(np.float32)
    planes = (second - first) * mix
    planes += first
    planes += grain
    texels = np.clip(planes, 0.0, 255.0, out=planes).astype(np.uint8)
    return np.ascontiguousarray(texels.transpose(0, 2, 3, 1))


def _upsampled(texture: np.ndarray, factor: int) -> Image.Image:
    """Return a texture as an image with each texel a factor x factor block."""
    side = texture.shape[0] * factor
    return Image.fromarray(texture).resize((side, side),
                                           Image.Resampling.NEAREST)


def _draw_distractors(image: Image.Image, rng: random.Random) -> None:
    """Scatter leaves, twigs, berries and shards in creature-like colours."""
    draw = ImageDraw.Draw(image)
    side = image.width
    for _ in range(rng.randint(4, 9)):
        x, y = rng.uniform(0, side), rng.uniform(0, side)
        kind = rng.choice(_DISTRACTOR_KINDS)
        if kind == 'leaf':
            points = _ellipse_points(x, y, rng.uniform(0.05, 0.16) * side,
                                     rng.uniform(0.05, 0.16) * side,
                                     rng.uniform(0, 180))
            colour = _jitter(rng.choice(_BACKGROUND_COLOURS), rng, 20.0)
            draw.polygon(points, fill=colour)
        elif kind == 'twig':
            points = [(x, y)]
            for _ in range(rng.randint(1, 3)):
                points.append(_polar(*points[-1], rng.uniform(0.1, 0.3) * side,
                                     rng.uniform(0, 360)))
            colour = _jitter(rng.choice(_TWIG_COLOURS), rng)
            width = max(1, round(rng.uniform(0.012, 0.03) * side))
            draw.line(points, fill=colour, width=width, joint='curve')
        elif kind == 'berry':
            r = rng.uniform(0.02, 0.045) * side
            colour = _jitter(rng.choice(_PART_COLOURS), rng)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            corners = [_polar(x, y, rng.uniform(0.04, 0.12) * side,
                              rng.uniform(0, 360)) for _ in range(3)]
            colour = _jitter(rng.choice(_SHARD_COLOURS), rng)
            draw.polygon(corners, fill=colour)


def _random_shift(rng: random.Random, low: int, high: int,
                  side: int) -> int:
    """Return a shift that moves the span [low, high) to a random place.

    The span lands inside [0, side) with a margin of 6 % of ``side`` when it
    fits (so that a centre crop keeps it), and is centred otherwise.
    """
    margin = 0.06 * side
    room = side - 2.0 * margin - (high - low)
    start = margin + rng.uniform(0.0, room) if room > 0 else (
        side - (high - low)) / 2.0
    return round(start) - low


def _render_specimen(label: int, rng: random.Random,
                     background: np.ndarray, patch_texture: np.ndarray,
                     occlusion_prob: float) -> Image.Image:
    """Render one RGB image of a species on a cluttered background.

    Args:
        label: The species' label.
        rng: The image's random generator.
        background: The background texture, of shape (size, size, 3).
        patch_texture: A texture, of the same shape, that may cover a
            region of the creature.
        occlusion_prob: The probability that one region is covered.

    Returns:
        The size x size image.
    """
    canvas = _upsampled(background, _SUPERSAMPLING)
    side = canvas.width
    _draw_distractors(canvas, rng)
    scene = canvas.copy()

    parts = species_parts(label)
    body = _sample_anatomy(rng)
    colours = _sample_colours(parts, rng)
    scale = rng.uniform(0.6, 0.88) * side / _CREATURE_LENGTH
    angle = rng.uniform(-25.0, 25.0)
    flip = bool(rng.random() < 0.5)
    # The creature spans at most 0.88 * side, so this layer holds it at any
    # rotation.
    layer_side = round(1.25 * side)
    creature = Image.new('RGBA', (layer_side, layer_side), (0, 0, 0, 0))
    _draw_creature(
        _Painter(creature, scale, angle, flip, (layer_side / 2,) * 2),
        parts, body, colours)
    bbox = creature.getbbox()
    left, top, right, bottom = bbox
    shift_x = _random_shift(rng, left, right, side)
    shift_y = _random_shift(rng, top, bottom, side)
    cropped = creature.crop(bbox)
    canvas.paste(cropped, (left + shift_x, top + shift_y), cropped)

    if rng.random() < occlusion_prob:
        region = rng.choice(_OCCLUDABLE_REGIONS)
        mask = Image.new('L', canvas.size, 0)
        placed_centre = (layer_side / 2 + shift_x, layer_side / 2 + shift_y)
        _draw_occluder(_Painter(mask, scale, angle, flip, placed_centre),
                       body, region)
        patch = scene if rng.random() < 0.5 else _upsampled(
            patch_texture, _SUPERSAMPLING)
        canvas.paste(patch, (0, 0), mask)

    # Colour jitter: a random gain per channel and a common offset.
    red, green, blue = (rng.uniform(0.9, 1.1) for _ in range(3))
    offset = rng.uniform(-12.0, 12.0)
    return canvas.reduce(_SUPERSAMPLING).convert('RGB', matrix=(
        red, 0.0, 0.0, offset,
        0.0, green, 0.0, offset,
        0.0, 0.0, blue, offset))


def _manifest(seed: int, img_size: int, train_per_class: int,
              test_per_class: int, occlusion_prob: float) -> dict:
    """Return the kt_demo.json content of a complete dataset."""
    return {
        'generator': _GENERATOR_NAME,
        'version': _GENERATOR_VERSION,
        'arguments': {
            'seed': seed,
            'img_size': img_size,
            'train_per_class': train_per_class,
            'test_per_class': test_per_class,
            'occlusion_prob': occlusion_prob,
        },
        'classes': list(DEMO_CLASSES),
        'num_images': len(DEMO_CLASSES) * (train_per_class + test_per_class),
        'complete': True,
    }


def _read_manifest(out_dir: Path) -> dict | None:
    """Return a directory's demo manifest, or None if it holds none."""
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or (
            manifest.get('generator') != _GENERATOR_NAME):
        return None
    return manifest


def _is_complete(out_dir: Path, expected: dict) -> bool:
    """Whether a directory holds the complete dataset a manifest describes."""
    if _read_manifest(out_dir) != expected:
        return False
    if not all((out_dir / name).is_file() for name in _LAYOUT_FILES):
        return False
    written = sum(1 for _ in (out_dir / 'images').glob('*/*.jpg'))
    return written == expected['num_images']


def _prepare_directory(out_dir: Path) -> None:
    """Create the output directory, or clear an earlier demo dataset in it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f'{out_dir} exists and is not a directory')
    out_dir.mkdir(parents=True, exist_ok=True)
    if _read_manifest(out_dir) is not None:
        shutil.rmtree(out_dir / 'images', ignore_errors=True)
        for name in (*_LAYOUT_FILES, MANIFEST_NAME):
            (out_dir / name).unlink(missing_ok=True)
    elif any(out_dir.iterdir()):
        raise FileExistsError(
            f'{out_dir} is not empty and holds no kt demo dataset (no valid '
            f'{MANIFEST_NAME}); choose a new or empty directory')


def _write_lines(path: Path, lines: list[str]) -> None:
    """Write lines to a text file, each ending with a newline."""
    path.write_text(''.join(f'{line}\n' for line in lines))


def make_demo_dataset(out_dir: str | Path, seed: int = 0, img_size: int = 80,
                      train_per_class: int = 60, test_per_class: int = 40,
                      occlusion_prob: float = 0.25) -> Path:
    """Write the demo dataset in CUB-200-2011's layout.

    The directory receives ``images/<NNN.species>/<species>_<NNNN>.jpg``,
    ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``,
    ``classes.txt`` and ``kt_demo.json`` (the arguments and image count).
    The output is byte-identical for the same arguments. A directory that
    already holds a complete demo dataset written with the same arguments is
    returned untouched; a demo dataset written with other arguments, or left
    incomplete, is replaced.

    Args:
        out_dir: The dataset directory; created if needed.
        seed: The random seed (non-negative).
        img_size: The side of the square images, in pixels (at least 32).
        train_per_class: The number of training images per species.
        test_per_class: The number of test images per species.
        occlusion_prob: The share of images in which one body region (head,
            wing, tail or legs) is covered by a background or texture patch.

    Returns:
        The dataset directory as a ``Path``.

    Raises:
        FileExistsError: If ``out_dir`` is a file, or a non-empty directory
            that holds no demo dataset.
        ValueError: If an argument is out of range.
    """
    if seed < 0:
        raise ValueError(f'seed must be non-negative, got {seed}')
    if img_size < 32:
        raise ValueError(f'img_size must be at least 32, got {img_size}')
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError('train_per_class and test_per_class must be at '
                         f'least 1, got {train_per_class}, {test_per_class}')
    if not 0.0 <= occlusion_prob <= 1.0:
        raise ValueError(
            f'occlusion_prob must be in [0, 1], got {occlusion_prob}')

    out_dir = Path(out_dir)
    manifest = _manifest(seed, img_size, train_per_class, test_per_class,
                         occlusion_prob)
    if _is_complete(out_dir, manifest):
        return out_dir
    _prepare_directory(out_dir)
    (out_dir / MANIFEST_NAME).write_text(
        json.dumps({**manifest, 'complete': False}, indent=2) + '\n')

    image_lines, label_lines, split_lines = [], [], []
    per_class = train_per_class + test_per_class
    for label, name in enumerate(DEMO_CLASSES):
        folder = f'{label + 1:03d}.{name}'
        (out_dir / 'images' / folder).mkdir(parents=True)
        textures = _textures(np.random.default_rng([seed, label]),
                             per_class, img_size)
        for index in range(per_class):
            rng = random.Random(f'kt-demo/{seed}/{label}/{index}')
            image = _render_specimen(label, rng, textures[index],
                                     textures[(index + 1) % per_class],
                                     occlusion_prob)
            relative = f'{folder}/{name}_{index + 1:04d}.jpg'
            image.save(out_dir / 'images' / relative, format='JPEG',
                       quality=JPEG_QUALITY, subsampling=0)
            image_id = len(image_lines) + 1
            image_lines.append(f'{image_id} {relative}')
            label_lines.append(f'{image_id} {label + 1}')
            split_lines.append(
                f'{image_id} {int(index < train_per_class)}')

    _write_lines(out_dir / 'images.txt', image_lines)
    _write_lines(out_dir / 'image_class_labels.txt', label_lines)
    _write_lines(out_dir / 'train_test_split.txt', split_lines)
    _write_lines(out_dir / 'classes.txt',
                 [f'{label + 1} {name}'
                  for label, name in enumerate(DEMO_CLASSES)])
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + '\n')
    return out_dir
