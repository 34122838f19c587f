"""``kt visualize``: where each model of a sequence looks, image by image."""
import random
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from ..errors import UserError, exit_on_user_error

CELL = 192
TITLE = 28


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
) -> None:
    """One row per image: the image as the models see it (the test pipeline's crop), then
    each stage's normalised attention map (SpatialAttention, upsampled) overlaid as a heat
    map, titled with that stage's predicted class and confidence."""
    console = Console()
    with exit_on_user_error():
        from ..stages.work_dir import parse_models, trained_stages
        stages = trained_stages(work_dir, parse_models(models))
        grid = attention_grid(stages, images, count, seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        grid.save(out)
        console.print(f'wrote {out}: {grid.height // (CELL + TITLE)} images x '
                      f'{len(stages)} stages')


def attention_grid(stages: list, images: Optional[List[Path]], count: int, seed: int):
    """Draw the grid (a PIL image) for ``stages`` on ``images`` or picked test images."""
    import numpy as np
    import torch
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    from PIL import Image, ImageDraw

    from registry_plugins import load_trained_model

    from ..reports.attention_overlay import overlay_attention
    from ..stages.stage_files import read_stage_config

    configs = [read_stage_config(stage.config) for stage in stages]
    cfg = configs[0]
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    classes = dataset.metainfo['classes']
    if not images:
        picked = random.Random(seed).sample(range(len(dataset)), min(count, len(dataset)))
        images = [Path(dataset.get_data_info(i)['img_path']) for i in picked]
    for image in images:
        if not Path(image).is_file():
            raise UserError(f'image {image} does not exist')
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    members = [load_trained_model(config, stage.checkpoint, logger='silent')
               for config, stage in zip(configs, stages)]

    grid = Image.new('RGB', ((len(members) + 1) * CELL, len(images) * (CELL + TITLE)), 'white')
    draw = ImageDraw.Draw(grid)
    for row, image in enumerate(images):
        data = pipeline(dict(img_path=str(image)))
        top = row * (CELL + TITLE)
        # The pipeline loads BGR (mmcv); show RGB.
        shown = data['inputs'].flip(0).permute(1, 2, 0).numpy().astype(np.uint8)
        grid.paste(Image.fromarray(shown).resize((CELL, CELL)), (0, top + TITLE))
        draw.text((4, top + 6), Path(image).name[:28], fill='black')
        for column, (stage, model) in enumerate(zip(stages, members), start=1):
            with torch.inference_mode():
                batch = model.data_preprocessor(dict(inputs=[data['inputs']]), False)
                logits, attention = model.logits_and_attention(batch['inputs'])
            confidence, label = logits.softmax(dim=1)[0].max(dim=0)
            heat = overlay_attention(shown, attention[0].numpy())
            grid.paste(Image.fromarray(heat).resize((CELL, CELL)), (column * CELL, top + TITLE))
            draw.text((column * CELL + 4, top + 2), f'stage {stage.index}', fill='black')
            draw.text((column * CELL + 4, top + 14),
                      f'{classes[int(label)][:22]} {100 * confidence.item():.0f}%', fill='black')
    return grid
