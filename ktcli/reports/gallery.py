"""Which test images tell a sequence's story, and what each member sees in them.

:func:`pick_gallery` chooses the images from the cached test outputs (no forward pass);
:func:`image_views` runs the members on the chosen images for their predictions, attention
maps and Grad-CAMs (:mod:`ktcli.reports.gradcam`), for ``kt report`` and ``kt visualize``.
"""
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ktbase.errors import builds_from

from ..errors import UserError, first_line
from .prediction_panels import ImageView, MemberView

FIXED = 'model 1 wrong, ensemble right'
BROKEN = 'model 1 right, ensemble wrong'
BOTH_WRONG = 'both wrong'
BOTH_RIGHT = 'both right'
KINDS = (FIXED, BROKEN, BOTH_WRONG, BOTH_RIGHT)
GALLERY_RULE = (
    'Up to a third of the images (rounded up) are ones model 1 got wrong and the ensemble '
    'right, those where the ensemble raised the true class\'s probability most; up to a '
    'sixth (rounded up) the reverse, where it lowered it most; the rest are split between '
    'images both got wrong and images both got right (half each, wrong first), drawn at '
    'random with seed 0. A kind with too few images leaves its share to the next kinds in '
    'that order. Every member\'s Grad-CAM explains the class that member predicted.')


@dataclass(frozen=True)
class GalleryPick:
    """A test image chosen for the gallery: its index in the test split and its kind."""

    index: int
    kind: str


def pick_gallery(first_probs: torch.Tensor, ensemble_probs: torch.Tensor, labels: torch.Tensor,
                 count: int, seed: int = 0) -> List[GalleryPick]:
    """Choose ``count`` test images by :data:`GALLERY_RULE`.

    Args:
        first_probs (Tensor): Model 1's class probabilities (N, classes).
        ensemble_probs (Tensor): The ensemble's (N, classes).
        labels (Tensor): The true classes (N,).
        count (int): How many images.
        seed (int): Seed of the random draws. Defaults to 0.

    Returns:
        list[GalleryPick]: The images, grouped by kind in :data:`KINDS` order.
    """
    first_right = (first_probs.argmax(dim=1) == labels).numpy()
    ensemble_right = (ensemble_probs.argmax(dim=1) == labels).numpy()
    rows = torch.arange(len(labels))
    change = (ensemble_probs[rows, labels] - first_probs[rows, labels]).numpy()
    members = {
        FIXED: np.flatnonzero(~first_right & ensemble_right),
        BROKEN: np.flatnonzero(first_right & ~ensemble_right),
        BOTH_WRONG: np.flatnonzero(~first_right & ~ensemble_right),
        BOTH_RIGHT: np.flatnonzero(first_right & ensemble_right)}
    ordered = {
        FIXED: sorted(members[FIXED], key=lambda i: (-change[i], i)),
        BROKEN: sorted(members[BROKEN], key=lambda i: (change[i], i))}
    generator = random.Random(seed)
    for kind in (BOTH_WRONG, BOTH_RIGHT):
        ordered[kind] = generator.sample(list(members[kind]), len(members[kind]))
    count = min(count, len(labels))
    fixed, broken = math.ceil(count / 3), math.ceil(count / 6)
    rest = max(0, count - fixed - broken)
    shares = {FIXED: fixed, BROKEN: broken, BOTH_WRONG: math.ceil(rest / 2),
              BOTH_RIGHT: rest // 2}
    picks: List[GalleryPick] = []
    left_over = 0
    for kind in KINDS:
        wanted = min(shares[kind] + left_over, count - len(picks))
        taken = ordered[kind][:wanted]
        picks += [GalleryPick(int(index), kind) for index in taken]
        left_over = wanted - len(taken)
    if len(picks) < count:  # the last kinds were short: fill from the earlier ones
        chosen = {pick.index for pick in picks}
        for kind in KINDS:
            extra = [i for i in ordered[kind] if int(i) not in chosen][:count - len(picks)]
            picks += [GalleryPick(int(index), kind) for index in extra]
        picks.sort(key=lambda pick: KINDS.index(pick.kind))
    return picks


def test_dataset(cfg):
    """The test split of a stage config (its data root set), built as mmpretrain builds it."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    with builds_from(cfg.filename, 'test dataset'):
        return DATASETS.build(cfg.test_dataloader.dataset)


@dataclass(frozen=True)
class GalleryImage:
    """An image to draw: its path, its class when known, and why it was picked."""

    path: Path
    true_label: Optional[int]
    kind: str = ''


def dataset_images(dataset, picks: Sequence[GalleryPick],
                   labels: Optional[torch.Tensor] = None) -> List[GalleryImage]:
    """The test images of ``picks``; with the cached ``labels``, check that the cache and the
    dataset list the images in the same order."""
    images = []
    for pick in picks:
        info = dataset.get_data_info(pick.index)
        if labels is not None and int(info['gt_label']) != int(labels[pick.index]):
            raise UserError('the cached test outputs do not follow the test split\'s order; '
                            'delete the stages\' test_outputs.pt and rerun')
        images.append(GalleryImage(Path(info['img_path']), int(info['gt_label']), pick.kind))
    return images


def labelled_paths(dataset, paths: Sequence[Path]) -> List[GalleryImage]:
    """User-given images, with their class where the image is one of the test split's
    (``dataset``; None: the data is not at hand, no class is known)."""
    known: Dict[Path, int] = {}
    for index in range(len(dataset) if dataset is not None else 0):
        info = dataset.get_data_info(index)
        known[Path(info['img_path']).resolve()] = int(info['gt_label'])
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f'image {path} does not exist')
    return [GalleryImage(Path(path), known.get(Path(path).resolve())) for path in paths]


# Images run through a member at once (its Grad-CAM keeps their activations for backward).
CHUNK = 8


def image_views(configs: Sequence, members: Sequence, labels: Sequence[str],
                images: Sequence[GalleryImage], methods: Sequence[str],
                advance: Callable[[], None] = lambda: None) -> List[ImageView]:
    """Run the members on ``images``: predictions, probabilities and maps.

    Args:
        configs (Sequence[Config]): The members' stage configs (the first one's test
            pipeline reads the images).
        members (Sequence[nn.Module]): The trained members, in eval mode.
        labels (Sequence[str]): How the members are named (``'stage 1'``, ...).
        images (Sequence[GalleryImage]): The images.
        methods (Sequence[str]): ``'attention'`` and/or ``'gradcam'``.
        advance (callable): Called after each member's pass over a chunk of images
            (``len(members) * ceil(len(images) / CHUNK)`` calls).

    Returns:
        list[ImageView]: One per image, with the ensemble's averaged-softmax prediction
        when there are several members.
    """
    from mmengine.dataset import Compose

    from ..scoring.ensemble_figures import fuse
    from .gradcam import gradcam_maps

    pipeline = Compose(configs[0].test_dataloader.dataset.pipeline)
    inputs = [_test_crop(pipeline, image.path) for image in images]
    per_member = []
    for model in members:
        logits, maps = [], dict(attention=[], gradcam=[])
        for start in range(0, len(inputs), CHUNK):
            with torch.inference_mode():
                batch = model.data_preprocessor(dict(inputs=inputs[start:start + CHUNK]),
                                                False)['inputs']
                chunk_logits, attention = model.logits_and_attention(batch)
            logits.append(chunk_logits)
            maps['attention'] += list(attention.numpy())
            if 'gradcam' in methods:
                maps['gradcam'] += list(gradcam_maps(model, batch, chunk_logits.argmax(dim=1)))
            advance()
        per_member.append((torch.cat(logits), maps))
    ensemble = fuse([logits for logits, _ in per_member]) if len(members) > 1 else None
    views = []
    for position, (image, tensor) in enumerate(zip(images, inputs)):
        member_views = []
        for label, (logits, maps) in zip(labels, per_member):
            probability, predicted = logits[position].softmax(dim=0).max(dim=0)
            member_views.append(MemberView(label, int(predicted), float(probability),
                                           {m: maps[m][position] for m in methods}))
        fused = None
        if ensemble is not None:
            probability, predicted = ensemble[position].max(dim=0)
            fused = (int(predicted), float(probability))
        # The pipeline loads BGR (mmcv); show RGB.
        shown = tensor.flip(0).permute(1, 2, 0).numpy().astype(np.uint8)
        views.append(ImageView(image.path.name, shown, image.true_label, member_views, fused,
                               image.kind))
    return views


def _test_crop(pipeline, path: Path) -> torch.Tensor:
    """An image through the test pipeline; one user error for a file that is no image."""
    try:
        return pipeline(dict(img_path=str(path)))['inputs']
    except Exception as error:  # mmcv's decoders fail in their own ways on non-images
        raise UserError(f'cannot read {path} as an image ({first_line(error)}); pass image '
                        'files with --images') from None


def gallery_steps(members: int, images: int) -> int:
    """How many times :func:`image_views` calls ``advance``."""
    return members * math.ceil(images / CHUNK)


def load_members(stages: Sequence) -> tuple:
    """The stage configs and trained models of ``stages`` (TrainedStage records)."""
    from registry_plugins import load_trained_model

    from ..stages.config_files import read_stage_config
    configs = [read_stage_config(stage.config) for stage in stages]
    models = [load_trained_model(config, stage.checkpoint, logger='silent')
              for config, stage in zip(configs, stages)]
    return configs, models
