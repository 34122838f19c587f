"""One demo creature: its jittered anatomy and colours, drawn part by part.

Creatures are drawn facing +x in canonical units around ``CREATURE_CENTRE``
through a similarity transform (:class:`Painter`), so that a scene can place
them at any position, scale, rotation and orientation.
"""
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

Colour = tuple[int, int, int]
Point = tuple[float, float]

HEAD_COLOURS: dict[str, Colour] = {
    'red': (205, 40, 35), 'blue': (40, 85, 205), 'yellow': (235, 200, 40)}
LEG_COLOURS: dict[str, Colour] = {
    'black': (30, 28, 28), 'orange': (240, 125, 25), 'pale': (235, 232, 218)}
BODY_COLOURS: tuple[Colour, ...] = (
    (140, 110, 80), (120, 120, 115), (110, 120, 80), (190, 165, 120),
    (95, 100, 115), (160, 140, 130))
_BILL_COLOUR: Colour = (60, 55, 50)


# Canonical units: creatures face +x around CREATURE_CENTRE, and
# CREATURE_LENGTH is the tail-tip to bill-tip span they roughly have.
CREATURE_CENTRE: Point = (100.0, 100.0)
CREATURE_LENGTH = 165.0


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


def sample_anatomy(rng: random.Random) -> _Anatomy:
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


def jitter(colour: Colour, rng: random.Random,
           sigma: float = 12.0) -> Colour:
    """Add per-channel Gaussian noise to a colour."""
    return tuple(min(255, max(0, int(value + rng.gauss(0.0, sigma))))
                 for value in colour)


def _shade(colour: Colour, factor: float) -> Colour:
    """Scale a colour's brightness."""
    return tuple(int(min(255.0, v * factor)) for v in colour)


def sample_colours(parts: dict[str, str],
                   rng: random.Random) -> _Colours:
    """Sample a creature's colours: its species' part colours, jittered."""
    body = jitter(rng.choice(BODY_COLOURS), rng)
    return _Colours(
        body=body,
        wing=_shade(body, rng.uniform(0.55, 0.75)),
        head=jitter(HEAD_COLOURS[parts['head_colour']], rng),
        legs=jitter(LEG_COLOURS[parts['leg_colour']], rng),
    )


def _rotate(x: float, y: float, degrees: float) -> Point:
    """Rotate a vector by an angle in degrees (clockwise on screen)."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    return x * cos - y * sin, x * sin + y * cos


def polar(x: float, y: float, radius: float, degrees: float) -> Point:
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


def ellipse_points(cx: float, cy: float, rx: float, ry: float,
                   tilt: float = 0.0) -> list[Point]:
    """Return the vertices of a (tilted) ellipse as a 28-sided polygon."""
    tilt_rad = math.radians(tilt)
    cos, sin = math.cos(tilt_rad), math.sin(tilt_rad)
    return [(cx + rx * u * cos - ry * v * sin,
             cy + rx * u * sin + ry * v * cos) for u, v in _UNIT_CIRCLE]


class Painter:
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
        centre_x, centre_y = CREATURE_CENTRE
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
        self.polygon(ellipse_points(cx, cy, rx, ry, tilt), fill)

    def line(self, points: Sequence[Point], width: float,
             fill: Colour | int) -> None:
        """Draw a polyline whose width is given in canonical units."""
        self._draw.line(self._pixels(points), fill=fill,
                        width=max(1, round(width * self._scale)),
                        joint='curve')


def _draw_legs(painter: Painter, body: _Anatomy, colour: Colour) -> None:
    """Draw two legs with three toes each below the body."""
    for leg_x in body.leg_xs:
        knee = (leg_x + body.knee_shift, body.leg_top + 12.0)
        foot = (leg_x + 3.0, body.leg_top + 23.0)
        painter.line([(leg_x, body.leg_top), knee, foot], 6.5, colour)
        for toe_angle, toe_length in ((-20.0, 7.0), (20.0, 7.0),
                                      (160.0, 4.0)):
            painter.line([foot, polar(*foot, toe_length, toe_angle)], 3.5,
                         colour)


def _draw_tail(painter: Painter, body: _Anatomy, shape: str,
               colour: Colour) -> None:
    """Draw a fan-, fork- or spike-shaped tail behind the body."""
    base = (body.tail_x, body.tail_y)
    length, angle = body.tail_length, body.tail_angle
    if shape == 'fan':
        arc = [polar(*base, length, angle + spread)
               for spread in _steps(-34.0, 34.0, 9)]
        outline = [polar(*base, 6.0, angle - 90.0), *arc,
                   polar(*base, 6.0, angle + 90.0)]
    elif shape == 'fork':
        outline = [polar(*base, 6.0, angle - 90.0),
                   polar(*base, 1.2 * length, angle - 19.0),
                   polar(*base, 0.55 * length, angle),
                   polar(*base, 1.2 * length, angle + 19.0),
                   polar(*base, 6.0, angle + 90.0)]
    else:
        outline = [polar(*base, 8.0, angle - 90.0),
                   polar(*base, 1.3 * length, angle),
                   polar(*base, 8.0, angle + 90.0)]
    painter.polygon(outline, colour)


def _draw_wing(painter: Painter, body: _Anatomy, pattern: str,
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


def _draw_head(painter: Painter, body: _Anatomy, shape: str,
               colour: Colour) -> None:
    """Draw a round, crested or pointed head with its bill and eye."""
    x, y, r = body.head_x, body.head_y, body.head_r
    if shape == 'crested':
        bases = [polar(x, y, 0.95 * r, a)
                 for a in (-165.0, -132.0, -100.0, -68.0)]
        tips = [polar(x, y, r + height, a) for a, height in
                zip((-150.0, -118.0, -86.0), body.crest_heights, strict=True)]
        outline = [bases[0]]
        for tip, base in zip(tips, bases[1:], strict=True):
            outline += [tip, base]
        painter.polygon([*outline, (x, y)], _shade(colour, 0.85))
    if shape == 'pointed':
        back = [polar(x, y, r, a) for a in _steps(-70.0, -290.0, 14)]
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


def draw_creature(painter: Painter, parts: dict[str, str], body: _Anatomy,
                  colours: _Colours) -> None:
    """Draw a creature's legs, tail, body, wing and head, back to front."""
    _draw_legs(painter, body, colours.legs)
    _draw_tail(painter, body, parts['tail_shape'], colours.wing)
    painter.ellipse(body.body_x, body.body_y, body.body_rx, body.body_ry,
                    colours.body)
    _draw_wing(painter, body, parts['wing_pattern'], colours.wing)
    _draw_head(painter, body, parts['head_shape'], colours.head)


def draw_occluder(painter: Painter, body: _Anatomy, region: str) -> None:
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
        x, y = polar(body.tail_x, body.tail_y, 0.6 * body.tail_length,
                     body.tail_angle)
        painter.circle(x, y, 0.85 * body.tail_length, 255)
    else:
        left, right = min(body.leg_xs) - 9.0, max(body.leg_xs) + 14.0
        top, bottom = body.leg_top - 2.0, body.leg_top + 30.0
        painter.polygon([(left, top), (right, top), (right, bottom),
                         (left, bottom)], 255)
