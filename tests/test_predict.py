"""kt predict on exported files and on a work dir; the attention overlay."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from ktcli.commands.predict import predict


def cli() -> typer.Typer:
    """The predict command on an app of its own (the callback keeps subcommand names)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(predict)
    app.callback()(lambda: None)
    return app


@pytest.fixture
def image_folder(tmp_path, demo_root) -> Path:
    """Four demo test images (two in a subfolder) and one file that is not an image."""
    folder = tmp_path / 'images'
    (folder / 'more').mkdir(parents=True)
    for k, image in enumerate(sorted((demo_root / 'images').rglob('*.jpg'))[:4]):
        shutil.copy(image, folder / ('more' if k >= 2 else '') / image.name)
    (folder / 'broken.jpg').write_text('not an image')
    return folder


def run_predict(*arguments: str):
    return CliRunner().invoke(cli(), ['predict', *arguments])


def json_lines(output: str) -> dict:
    records = [json.loads(line) for line in output.splitlines()]
    return {Path(record['image']).name: record for record in records}


def test_exported_file_and_work_dir_agree_and_draw_attention(exported, three_members,
                                                             image_folder, tmp_path):
    onnx_maps, eager_maps = tmp_path / 'onnx_maps', tmp_path / 'eager_maps'
    from_file = run_predict(str(exported['onnx']), str(image_folder), '--json', '--topk', '3',
                            '--attention-out', str(onnx_maps))
    from_work_dir = run_predict(str(three_members), str(image_folder), '--json',
                                '--attention-out', str(eager_maps))
    for result in (from_file, from_work_dir):
        assert result.exit_code == 0, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and 'broken.jpg' in lines[0] and 'skipped' in lines[0]
    file_records, eager_records = json_lines(from_file.stdout), json_lines(from_work_dir.stdout)
    assert len(file_records) == 4 and set(file_records) == set(eager_records)
    for name, record in file_records.items():
        assert len(record['predictions']) == 3
        eager = eager_records[name]['predictions'][0]
        assert record['predictions'][0]['name'] == eager['name']
        assert abs(record['predictions'][0]['probability'] - eager['probability']) <= 1e-4
    for folder in (onnx_maps, eager_maps):
        pictures = sorted(folder.glob('*.png'))
        assert [p.stem for p in pictures] == sorted(Path(n).stem for n in file_records)
        # The 40 px image scaled to 192 px, then one overlay per member, 4 px apart, under
        # a caption band and a band of panel names.
        assert Image.open(pictures[0]).size == (4 * 192 + 3 * 4, 192 + 2 * 18)


def test_torchscript_file_predicts_the_same_top1_as_its_work_dir(exported, three_members,
                                                                  image_folder):
    # This file holds the logits fusion and normalises in its graph.
    from_file = run_predict(str(exported['torchscript']), str(image_folder), '--json')
    from_work_dir = run_predict(str(three_members), str(image_folder), '--json',
                                '--fusion', 'logits')
    file_records, eager_records = json_lines(from_file.stdout), json_lines(from_work_dir.stdout)
    assert len(file_records) == 4
    for name, record in file_records.items():
        assert record['predictions'][0]['index'] == eager_records[name]['predictions'][0]['index']


def test_tables_and_no_readable_image(exported, tmp_path, image_folder):
    result = run_predict(str(exported['onnx']), str(next(image_folder.glob('*_*.jpg'))),
                         '--topk', '2')
    assert result.exit_code == 0
    assert 'probability' in result.stdout and result.stdout.count('│ 2 │') == 1

    broken = run_predict(str(exported['onnx']), str(image_folder / 'broken.jpg'))
    assert broken.exit_code != 0
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 2 and 'broken.jpg' in lines[0]
    assert 'no image could be read (1 given)' in lines[1]

    fixed = run_predict(str(exported['onnx']), str(image_folder), '--fusion', 'logits')
    assert fixed.exit_code == 2 and 'apply to work dirs' in fixed.stderr


def test_attention_out_needs_attention_outputs(three_members, tmp_path, image_folder):
    import torch

    from ktcli.deployment.ensemble_module import load_work_dir_ensemble
    from ktcli.deployment.export import ensemble_metadata, write_model

    path = tmp_path / 'plain.pt'
    ensemble = load_work_dir_ensemble(three_members, models=[1])
    write_model(ensemble.module, torch.zeros(2, 3, 32, 32), path,
                ensemble_metadata(ensemble, 'torchscript'), 'torchscript')
    result = run_predict(str(path), str(image_folder), '--attention-out', str(tmp_path / 'maps'))
    assert result.exit_code == 2
    assert 'exported without attention maps' in result.stderr
    assert not (tmp_path / 'maps').exists()


def test_preparation_reproduces_the_test_pipeline(three_members, demo_root):
    import cv2
    from mmengine.config import Config
    from mmpretrain.registry import DATASETS

    from ktcli.commands.predict import fit_to_input
    from ktcli.stages.work_dir import StageData, trained_stages

    cfg = Config.fromfile(str(trained_stages(three_members, [1])[0].config))
    dataset = DATASETS.build(StageData(demo_root).config(cfg).test_dataloader.dataset)
    preprocessing = dict(resize=[36, 36], crop=[32, 32], interpolation='bilinear')
    for k in range(4):
        sample = dataset[k]
        image = cv2.imread(sample['data_samples'].img_path)
        crop, box = fit_to_input(image, preprocessing)
        assert np.array_equal(crop.transpose(2, 0, 1), sample['inputs'].numpy())
        # 40 px resized to 36 then cropped at 2: pixels 2..34 of 36, i.e. 2.2..37.8 of 40.
        assert box == (2, 2, 38, 38)


def test_overlay_attention():
    from ktcli.reports.attention_overlay import attention_strip, overlay_attention

    image = np.full((20, 30, 3), 100, dtype=np.uint8)
    attention = np.arange(6, dtype=np.float32).reshape(2, 3)
    blended = overlay_attention(image, attention, box=(5, 0, 25, 20))
    assert blended.shape == image.shape and blended.dtype == np.uint8
    assert (blended[:, :5] == 100).all() and (blended[:, 25:] == 100).all()
    # jet: low attention is blue, high attention red.
    assert blended[10, 6, 2] > blended[10, 6, 0] and blended[10, 24, 0] > blended[10, 24, 2]
    flat = overlay_attention(image, np.zeros((4, 4), dtype=np.float32))
    assert np.isfinite(flat).all()
    strip = attention_strip(image, [attention, attention], ['stage 1', 'stage 2'],
                            height=20)
    assert strip.shape == (20 + 18, 3 * 30 + 2 * 4, 3)
    # Under the name band: the image itself, unscaled.
    assert np.array_equal(strip[18:, :30], image)
