"""``kt visualize``: where each model of a sequence looks, image by image."""
import io
import random
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from ktbase.writing import write_atomically

from ..errors import UserError, exit_on_user_error
from .training_options import STAGE_DATA_ROOT

CELL = 192


class Method(str, Enum):
    attention = 'attention'
    gradcam = 'gradcam'


def visualize(
    work_dir: Path = typer.Argument(..., help='A work dir written by `kt train`.'),
    images: Optional[List[Path]] = typer.Option(
        None, '--images', help='Images to show (repeatable; default: test images picked '
        'with --seed).'),
    out: Path = typer.Option(Path('grid.png'), help='The PNG grid to write.'),
    count: int = typer.Option(6, min=1, help='How many test images to pick without --images.'),
    seed: int = typer.Option(0, help='Seed for picking test images.'),
    models: Optional[str] = typer.Option(
        None, help='Stages to show, e.g. 1,2 (default: all finished ones).'),
    data_root: Optional[Path] = STAGE_DATA_ROOT,
    method: Method = typer.Option(
        Method.attention, help="attention: each stage's normalised SpatialAttention map (what "
        "the OR-loss acts on); gradcam: Grad-CAM of its predicted class (pytorch-grad-cam, "
        "the paper's Figure 5), at the backbone's last feature map."),
) -> None:
    """One row per image: the image as the models see it (the test pipeline's crop) with
    its true class and the ensemble's prediction, then each stage's map overlaid as a heat
    map, titled with that stage's predicted class and probability, framed green where it
    is right and red where it is wrong."""
    console = Console()
    with exit_on_user_error():
        from PIL import Image
        if out.suffix.lower() not in Image.registered_extensions():
            raise UserError(f'--out {out} needs an image suffix PIL writes, e.g. .png or .jpg')
        from ..stages.work_dir import parse_models, trained_stages
        stages = trained_stages(work_dir, parse_models(models))
        grid, shown = prediction_grid(stages, images, count, seed, method.value, data_root)
        picture = io.BytesIO()
        grid.save(picture, format=Image.registered_extensions()[out.suffix.lower()])
        write_atomically(out, picture.getvalue())
        console.print(f'wrote {out}: {shown} images x {len(stages)} stages ({method.value})',
                      soft_wrap=True)


def prediction_grid(stages: list, images: Optional[List[Path]], count: int, seed: int,
                    method: str, data_root: Optional[Path] = None):
    """The grid (a PIL image) for ``stages`` on ``images`` or picked test images (of their
    data, in ``data_root`` or a folder found to hold it), and how many images it shows."""
    from ..deployment.ensemble_module import class_names_of
    from ..reports.gallery import (GalleryImage, image_views, labelled_paths, load_members,
                                   test_dataset)
    from ..reports.prediction_panels import draw_grid
    from ..stages.work_dir import StageData

    configs, members = load_members(stages)
    # Images of one's own need the data only for the class names of an ImageFolder tree and
    # the true class of test images.
    cfg = StageData(data_root).config(configs[0], required=not images)
    at_hand = cfg.test_dataloader.dataset.get('data_root') is not None
    dataset = test_dataset(cfg) if at_hand else None
    # The split at hand names the classes; without it, the config or the dataset type.
    classes = (list(dataset.metainfo['classes']) if dataset is not None
               else class_names_of(cfg, members[0].head.num_classes))
    if images:
        shown = labelled_paths(dataset, images)
    else:
        picked = random.Random(seed).sample(range(len(dataset)), min(count, len(dataset)))
        shown = [GalleryImage(Path(info['img_path']), int(info['gt_label']))
                 for info in map(dataset.get_data_info, picked)]
    views = image_views(configs, members, [f'stage {s.index}' for s in stages], shown, [method])
    return draw_grid(views, classes, [method], CELL), len(views)
