"""Draw attention maps over images as heat maps."""
from typing import Optional, Sequence, Tuple

import numpy as np

# (x1, y1, x2, y2) in pixels, x2 and y2 exclusive.
Box = Tuple[int, int, int, int]
# The least height of a strip's panels, and the height of a text band above them.
PANEL_HEIGHT = 192
LABEL_BAND = 18


def overlay_attention(image: np.ndarray, attention: np.ndarray, alpha: float = 0.5,
                      colormap: str = 'jet', box: Optional[Box] = None) -> np.ndarray:
    """Blend an attention map, as a heat map, over an image.

    The map is scaled to 0..1 by its own minimum and maximum (a constant map
    shows as the colormap's lowest colour), upsampled bilinearly to the
    image (or to ``box``), coloured with a matplotlib colormap and alpha-blended.

    Args:
        image (np.ndarray): An RGB image (H, W, 3), uint8.
        attention (np.ndarray): The map (h, w), any real values.
        alpha (float): The heat map's weight in the blend. Defaults to 0.5.
        colormap (str): A matplotlib colormap name. Defaults to ``'jet'``.
        box (Box, optional): Draw the map over this region only (the part of
            the image the model saw). Defaults to None (the whole image).

    Returns:
        np.ndarray: The blended RGB image (H, W, 3), uint8.
    """
    import cv2
    import matplotlib

    x1, y1, x2, y2 = box or (0, 0, image.shape[1], image.shape[0])
    attention = np.asarray(attention, dtype=np.float32)
    low, high = float(attention.min()), float(attention.max())
    scaled = (attention - low) / (high - low) if high > low else np.zeros_like(attention)
    scaled = cv2.resize(scaled, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    heat = matplotlib.colormaps[colormap](np.clip(scaled, 0, 1))[..., :3] * 255
    result = image.copy()
    region = result[y1:y2, x1:x2].astype(np.float32)
    result[y1:y2, x1:x2] = np.round((1 - alpha) * region + alpha * heat).astype(np.uint8)
    return result


def attention_strip(image: np.ndarray, attentions: Sequence[np.ndarray],
                    labels: Sequence[str], caption: str = '', box: Optional[Box] = None,
                    height: int = PANEL_HEIGHT, gap: int = 4) -> np.ndarray:
    """The image followed by one overlay per attention map, side by side, each named.

    Each panel is scaled up (never down) to ``height`` pixels, with its label
    in a band above it and ``caption`` in a band above all.

    Args:
        image (np.ndarray): An RGB image (H, W, 3), uint8.
        attentions (Sequence[np.ndarray]): Maps (h, w), e.g. one per member.
        labels (Sequence[str]): One name per map (the image's panel is
            ``image``).
        caption (str): A line above the panels, e.g. the prediction.
            Defaults to '' (no band).
        box (Box, optional): See :func:`overlay_attention`.
        height (int): The least panel height. Defaults to :data:`PANEL_HEIGHT`.
        gap (int): White pixels between the panels. Defaults to 4.

    Returns:
        np.ndarray: An RGB image, uint8.
    """
    from PIL import Image, ImageDraw

    from .plots import plain_text
    scale = max(1.0, height / image.shape[0])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    panels = [image] + [overlay_attention(image, attention, box=box)
                        for attention in attentions]
    names = ['image', *labels]
    top = LABEL_BAND * (2 if caption else 1)
    canvas = Image.new('RGB', (len(panels) * (size[0] + gap) - gap, top + size[1]), 'white')
    draw = ImageDraw.Draw(canvas)
    if caption:
        draw.text((4, 3), plain_text(caption), fill='black')
    for k, (panel, name) in enumerate(zip(panels, names)):
        left = k * (size[0] + gap)
        canvas.paste(Image.fromarray(panel).resize(size, Image.BILINEAR), (left, top))
        draw.text((left + 4, top - LABEL_BAND + 3), plain_text(name), fill='black')
    return np.asarray(canvas)
