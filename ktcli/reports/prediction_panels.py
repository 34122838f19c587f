"""Panels of test images with each member's map and prediction, right or wrong marked.

One drawing serves ``kt visualize`` (a PNG grid, one row per image) and the gallery of
``kt report`` (one strip per image): the image the models see, titled with its true class
(and the ensemble's prediction), then per member and map kind (attention, Grad-CAM) the map
overlaid on the image, titled with the member's predicted class and probability, framed
green when right and red when wrong. Class names wrap onto as many lines as they need.
"""
import functools
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .attention_overlay import overlay_attention
from .plots import plain_text

RIGHT, WRONG, NEUTRAL = (22, 130, 60), (200, 30, 30), (60, 60, 60)
FONT_SIZE = 13
LINE = FONT_SIZE + 4
PAD = 4
FRAME = 3
METHOD_NAMES = dict(attention='attention', gradcam='Grad-CAM')


@dataclass
class MemberView:
    """One member's prediction on an image and its maps.

    Attributes:
        label (str): How the member is named, e.g. ``'stage 2'``.
        predicted (int): Its top-1 class.
        probability (float): Its softmax probability of that class, 0..1.
        maps (dict): Map kind (``'attention'``, ``'gradcam'``) -> (h, w) array.
    """

    label: str
    predicted: int
    probability: float
    maps: Dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ImageView:
    """A test image as the members see it, with their predictions.

    Attributes:
        name (str): The image's file name.
        image (np.ndarray): The test pipeline's crop, RGB uint8 (H, W, 3).
        true_label (int, optional): Its class, when known.
        members (list[MemberView]): One per member.
        ensemble (tuple, optional): The ensemble's (class, probability).
        kind (str): Why it was picked (the gallery's rule), or ``''``.
    """

    name: str
    image: np.ndarray
    true_label: Optional[int]
    members: List[MemberView]
    ensemble: Optional[tuple] = None
    kind: str = ''


@functools.lru_cache(maxsize=None)
def _font(size: int = FONT_SIZE):
    """DejaVu Sans (shipped with matplotlib, so always there; it has ✓ and ✗)."""
    from matplotlib import font_manager
    from PIL import ImageFont
    return ImageFont.truetype(font_manager.findfont('DejaVu Sans'), size)


def wrap(text: str, width: int, font=None) -> List[str]:
    """Break ``text`` into lines no wider than ``width`` pixels: after a space, a hyphen or
    an underscore where it can, inside a word only where a piece alone is too wide;
    nothing is dropped."""
    font = font or _font()
    text = plain_text(text, len(text))
    lines = ['']
    for piece in re.split(r'(?<=[\s_-])', text):
        while len(piece) > 1 and font.getlength(piece.rstrip()) > width:
            cut = 1
            while cut < len(piece) and font.getlength(piece[:cut + 1]) <= width:
                cut += 1
            lines += [piece[:cut], '']
            piece = piece[cut:]
        if lines[-1] and font.getlength((lines[-1] + piece).rstrip()) > width:
            lines.append('')
        lines[-1] += piece
    lines = [line.rstrip() for line in lines if line.strip()]
    return lines or ['']


def _mark(right: Optional[bool]) -> str:
    return '' if right is None else ('✓ ' if right else '✗ ')


def _colour(right: Optional[bool]) -> tuple:
    return NEUTRAL if right is None else (RIGHT if right else WRONG)


def _titles(view: ImageView, classes: Sequence[str], methods: Sequence[str],
            cell: int) -> List[List[tuple]]:
    """Per panel: its title lines as (text, colour)."""
    width = cell - 2 * PAD
    truth = 'true class unknown' if view.true_label is None else \
        f'true: {classes[view.true_label]}'
    first = [(line, NEUTRAL) for line in wrap(truth, width)]
    if view.ensemble is not None:
        right = None if view.true_label is None else view.ensemble[0] == view.true_label
        text = f'{_mark(right)}ensemble: {classes[view.ensemble[0]]} {100 * view.ensemble[1]:.0f}%'
        first += [(line, _colour(right)) for line in wrap(text, width)]
    panels = [first]
    for member in view.members:
        right = None if view.true_label is None else member.predicted == view.true_label
        for method in methods:
            head = f'{member.label} · {METHOD_NAMES[method]}'
            text = f'{_mark(right)}{classes[member.predicted]} {100 * member.probability:.0f}%'
            panels.append([(line, NEUTRAL) for line in wrap(head, width)]
                          + [(line, _colour(right)) for line in wrap(text, width)])
    return panels


def draw_strip(view: ImageView, classes: Sequence[str], methods: Sequence[str],
               cell: int = 192, title_lines: Optional[int] = None):
    """One image and its member panels side by side, as a PIL image.

    Args:
        view (ImageView): The image and the members' predictions and maps.
        classes (Sequence[str]): Class names, by index.
        methods (Sequence[str]): Which maps to show per member, in order
            (``'attention'``, ``'gradcam'``).
        cell (int): Panel width and height in pixels. Defaults to 192.
        title_lines (int, optional): Lines reserved for titles (to align the
            strips of a grid); defaults to what this strip needs.

    Returns:
        PIL.Image.Image: RGB, ``(1 + members x methods) * cell`` wide.
    """
    from PIL import Image, ImageDraw

    titles = _titles(view, classes, methods, cell)
    lines = title_lines or max(len(title) for title in titles)
    top = PAD + lines * LINE
    strip = Image.new('RGB', (len(titles) * cell, top + cell), 'white')
    draw = ImageDraw.Draw(strip)
    base = np.asarray(Image.fromarray(view.image).resize((cell - 2 * FRAME,) * 2))
    panels = [(base, None)]
    for member in view.members:
        right = None if view.true_label is None else member.predicted == view.true_label
        panels += [(overlay_attention(base, member.maps[method]), right) for method in methods]
    for column, ((pixels, right), title) in enumerate(zip(panels, titles)):
        left = column * cell
        for row, (text, colour) in enumerate(title):
            draw.text((left + PAD, PAD + row * LINE), text, fill=colour, font=_font())
        if right is not None:
            draw.rectangle((left, top, left + cell - 1, top + cell - 1), fill=_colour(right))
        strip.paste(Image.fromarray(pixels), (left + FRAME, top + FRAME))
    return strip


def title_lines(views: Sequence[ImageView], classes: Sequence[str], methods: Sequence[str],
                cell: int = 192) -> int:
    """The most title lines any panel of ``views`` needs."""
    return max(len(title) for view in views for title in _titles(view, classes, methods, cell))


def draw_grid(views: Sequence[ImageView], classes: Sequence[str], methods: Sequence[str],
              cell: int = 192):
    """:func:`draw_strip` for every view, stacked into one PIL image (``kt visualize``)."""
    from PIL import Image

    lines = title_lines(views, classes, methods, cell)
    strips = [draw_strip(view, classes, methods, cell, lines) for view in views]
    grid = Image.new('RGB', (strips[0].width, sum(s.height for s in strips)), 'white')
    for row, strip in enumerate(strips):
        grid.paste(strip, (0, row * strip.height))
    return grid
