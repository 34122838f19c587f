"""Draw attention maps over images as heat maps."""
from typing import Optional, Sequence, Tuple

import numpy as np

# (x1, y1, x2, y2) in pixels, x2 and y2 exclusive.
Box = Tuple[int, int, int, int]


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
                    box: Optional[Box] = None, gap: int = 4) -> np.ndarray:
    """The image followed by one overlay per attention map, side by side.

    Args:
        image (np.ndarray): An RGB image (H, W, 3), uint8.
        attentions (Sequence[np.ndarray]): Maps (h, w), e.g. one per member.
        box (Box, optional): See :func:`overlay_attention`.
        gap (int): White pixels between the panels. Defaults to 4.

    Returns:
        np.ndarray: An RGB image (H, (1 + len(attentions)) * W + gaps, 3), uint8.
    """
    separator = np.full((image.shape[0], gap, 3), 255, dtype=np.uint8)
    panels = [image]
    for attention in attentions:
        panels += [separator, overlay_attention(image, attention, box=box)]
    return np.concatenate(panels, axis=1)
