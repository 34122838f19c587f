"""A demo image: a creature on a cluttered, textured background.

The creatures are drawn with varying position, scale, rotation and
orientation, with colour and shape jitter, on cluttered textured backgrounds
whose colours and distractor shapes resemble the creatures' own. In a share
of the images one body region is occluded, so a model that relies on a single
part fails on those images.
"""
import random

import numpy as np
from PIL import Image, ImageDraw

from .creature import (
    BODY_COLOURS,
    CREATURE_LENGTH,
    HEAD_COLOURS,
    LEG_COLOURS,
    Colour,
    Painter,
    draw_creature,
    draw_occluder,
    ellipse_points,
    jitter,
    polar,
    sample_anatomy,
    sample_colours,
)
from .species import species_parts

_OCCLUDABLE_REGIONS = ('head', 'wing', 'tail', 'legs')
_BACKGROUND_COLOURS: tuple[Colour, ...] = (
    (70, 100, 50), (110, 140, 70), (50, 80, 60), (120, 90, 60),
    (150, 120, 80), (130, 130, 125), (90, 90, 95), (150, 175, 200),
    (200, 185, 150)) + BODY_COLOURS
_PART_COLOURS: tuple[Colour, ...] = (*HEAD_COLOURS.values(),
                                      *LEG_COLOURS.values())
_TWIG_COLOURS: tuple[Colour, ...] = (*_PART_COLOURS, (90, 65, 40))
_SHARD_COLOURS: tuple[Colour, ...] = (*_PART_COLOURS, *BODY_COLOURS)
_DISTRACTOR_KINDS = ('leaf', 'twig', 'berry', 'shard')
# Images are drawn at this multiple of their size, then box-downsampled.
_SUPERSAMPLING = 2


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


def background_textures(rng: np.random.Generator, count: int,
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
            points = ellipse_points(x, y, rng.uniform(0.05, 0.16) * side,
                                    rng.uniform(0.05, 0.16) * side,
                                    rng.uniform(0, 180))
            colour = jitter(rng.choice(_BACKGROUND_COLOURS), rng, 20.0)
            draw.polygon(points, fill=colour)
        elif kind == 'twig':
            points = [(x, y)]
            for _ in range(rng.randint(1, 3)):
                points.append(polar(*points[-1], rng.uniform(0.1, 0.3) * side,
                                    rng.uniform(0, 360)))
            colour = jitter(rng.choice(_TWIG_COLOURS), rng)
            width = max(1, round(rng.uniform(0.012, 0.03) * side))
            draw.line(points, fill=colour, width=width, joint='curve')
        elif kind == 'berry':
            r = rng.uniform(0.02, 0.045) * side
            colour = jitter(rng.choice(_PART_COLOURS), rng)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            corners = [polar(x, y, rng.uniform(0.04, 0.12) * side,
                             rng.uniform(0, 360)) for _ in range(3)]
            colour = jitter(rng.choice(_SHARD_COLOURS), rng)
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


def render_specimen(label: int, rng: random.Random,
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
    body = sample_anatomy(rng)
    colours = sample_colours(parts, rng)
    scale = rng.uniform(0.6, 0.88) * side / CREATURE_LENGTH
    angle = rng.uniform(-25.0, 25.0)
    flip = bool(rng.random() < 0.5)
    # The creature spans at most 0.88 * side, so this layer holds it at any
    # rotation.
    layer_side = round(1.25 * side)
    creature = Image.new('RGBA', (layer_side, layer_side), (0, 0, 0, 0))
    draw_creature(
        Painter(creature, scale, angle, flip, (layer_side / 2,) * 2),
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
        draw_occluder(Painter(mask, scale, angle, flip, placed_centre),
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
