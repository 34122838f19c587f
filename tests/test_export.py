"""kt export: a 3-member ensemble, one member of another backbone shape, to ONNX and TorchScript.

The work dir is made once per session from a copy of the session's trained work dir (two
resnet18_tiny stages, 32 px, one epoch): stage 3 is appended to its manifest, a ResNet-18
with strides (1, 2, 2, 1), whose attention map is 2 x 2 instead of 4 x 4 at 32 px (no shipped
backbone config has those strides), with constructor-initialised (untrained) weights.
Training it for real would cost the session another stage, and nothing export checks
depends on training; tests/test_mixed_sequence.py exports a really trained mixed sequence.
"""
import json
import shutil
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from ktcli.commands.export import export

# The stage appended to the trained ones: its digest, made up (16 hex digits, as a stage
# directory's name must be), and its backbone strides.
UNTRAINED_STAGE = ('00000000000000a3', (1, 2, 2, 1))


def cli() -> typer.Typer:
    """The export command on an app of its own (the callback keeps subcommand names)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(export)
    app.callback()(lambda: None)
    return app


def add_untrained_stage(work_dir: Path, digest: str, strides: tuple) -> None:
    """Append a stage like stage 1 but with these backbone strides and untrained weights."""
    import torch

    from ktcli.stages.config_files import read_stage_config, write_stage_config
    from ktcli.stages.manifest import Manifest
    from ktcli.stages.work_dir import trained_stages
    from registry_plugins import build_model_from_config

    manifest = Manifest(work_dir)
    index = len(manifest.chain) + 1
    cfg = read_stage_config(trained_stages(work_dir, [1])[0].config)
    cfg.model.backbone.strides = strides
    stage_dir = work_dir / 'stages' / digest
    write_stage_config(cfg, stage_dir)
    torch.manual_seed(index)
    torch.save(dict(state_dict=build_model_from_config(cfg).state_dict(), meta={}),
               stage_dir / 'epoch_1.pth')
    manifest.update(digest, index=index, status='done', dir=f'stages/{digest}',
                    config=f'stages/{digest}/config.json',
                    checkpoint=f'stages/{digest}/epoch_1.pth')
    manifest.set_sequence([*manifest.chain, digest], 'train')


def three_member_work_dir(base: Path, trained: Path) -> Path:
    """The 3-member work dir under ``base``: made from a copy of ``trained`` (a 2-stage work
    dir) on the first call, reused after."""
    work_dir = base / 'kt_export' / 'work'
    digest, strides = UNTRAINED_STAGE
    if (work_dir / 'stages' / digest / 'epoch_1.pth').is_file():
        return work_dir
    shutil.rmtree(work_dir, ignore_errors=True)
    shutil.copytree(trained, work_dir, symlinks=True)
    add_untrained_stage(work_dir, digest, strides)
    return work_dir


def exported_files(work_dir: Path) -> Dict[str, Path]:
    """Both formats of the work dir's ensemble, exported through the command on the first call.

    ONNX: softmax fusion, attention maps, normalised input. TorchScript: the
    authors' logits fusion, attention maps, normalisation in the graph.
    """
    folder = work_dir.parent / 'exports'
    paths = dict(onnx=folder / 'ensemble.onnx', torchscript=folder / 'ensemble.pt')
    options = dict(onnx=[], torchscript=['--fusion', 'logits', '--include-preprocessing'])
    for model_format, path in paths.items():
        if path.is_file():
            continue
        result = CliRunner().invoke(cli(), [
            'export', str(work_dir), '--format', model_format, '--out', str(path),
            '--with-attention', '--batch-size', '5', *options[model_format]])
        assert result.exit_code == 0, result.output + result.stderr
        (folder / f'{model_format}.log').write_text(result.output)
    return paths


def read_back(path: Path) -> dict:
    from ktcli.deployment.export_verifier import ExportedModel
    return ExportedModel(path).metadata


@pytest.mark.parametrize('model_format', ['onnx', 'torchscript'])
def test_export_is_checked_in_a_fresh_process_at_batch_5_and_1(exported, model_format):
    path = exported[model_format]
    log = ' '.join((path.parent / f'{model_format}.log').read_text().split())
    # The check's table: batch 5 and batch 1, every top-1 agreeing.
    assert 'checked in a fresh process' in log and 'first 5 test images' in log
    assert '5/5' in log and '1/1' in log
    assert f'wrote {path}' in log
    assert not path.with_name(path.name + '.data').exists()


@pytest.mark.parametrize('model_format', ['onnx', 'torchscript'])
def test_metadata_round_trips(exported, three_members, model_format):
    from ktcli import __version__
    from ktcli.data.demo import DEMO_CLASSES
    from ktcli.stages.manifest import Manifest

    metadata = read_back(exported[model_format])
    assert metadata['kt_version'] == __version__
    assert metadata['format'] == model_format
    assert metadata['dtype'] == 'fp32'
    assert metadata['quantisation'] is None and metadata['accuracy_check'] is None
    assert metadata['classes'] == list(DEMO_CLASSES)
    assert [s['index'] for s in metadata['stages']] == [1, 2, 3]
    assert [s['digest'] for s in metadata['stages']] == Manifest(three_members).chain
    assert [s['attention_size'] for s in metadata['stages']] == [[4, 4], [4, 4], [2, 2]]
    # Maps of different sizes cannot be stacked: one output per member.
    assert metadata['outputs'] == ['probabilities', 'attention_1', 'attention_2', 'attention_3']
    assert metadata['preprocessing'] | dict(mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True,
                                            resize=[36, 36], crop=[32, 32]) \
        == metadata['preprocessing']
    assert metadata['input']['size'] == [32, 32]
    assert metadata['input']['channel_order'] == 'RGB'
    in_graph = model_format == 'torchscript'
    assert metadata['input']['normalised_in_model'] is in_graph
    assert metadata['fusion'] == ('logits' if in_graph else 'softmax')


@pytest.mark.parametrize('model_format', ['onnx', 'torchscript'])
def test_exported_file_matches_the_eager_ensemble_at_any_batch_size(exported, three_members,
                                                                    model_format):
    from ktcli.deployment.ensemble_module import load_work_dir_ensemble
    from ktcli.deployment.export_verifier import ExportedModel, to_model_input, torch_runner

    model = ExportedModel(exported[model_format])
    metadata = model.metadata
    ensemble = load_work_dir_ensemble(three_members, fusion=metadata['fusion'],
                                      with_attention=True,
                                      include_preprocessing=metadata['input']
                                      ['normalised_in_model'])
    eager = torch_runner(ensemble.module)
    images = np.random.default_rng(1).integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    for batch in (1, 3, 7):
        inputs = to_model_input(images[:batch], metadata)
        expected, actual = eager(inputs), model(inputs)
        assert [a.shape for a in actual] == [e.shape for e in expected]
        assert actual[0].shape == (batch, 20) and actual[3].shape == (batch, 2, 2)
        assert np.abs(actual[0] - expected[0]).max() <= 1e-4
        assert (actual[0].argmax(1) == expected[0].argmax(1)).all()


def test_a_tampered_file_fails_its_check_and_is_removed(exported, three_members, tmp_path):
    import onnx
    from onnx import numpy_helper

    from ktcli.deployment.ensemble_module import load_work_dir_ensemble
    from ktcli.deployment.export_check import ExportCheckError, check_batches, verify_export

    path = tmp_path / 'tampered.onnx'
    model = onnx.load(str(exported['onnx']))
    for k, weights in enumerate(model.graph.initializer):
        if weights.name == 'members.2.head.fc.weight':
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(weights) * 5, weights.name))
    onnx.save(model, str(path))
    metadata = read_back(path)
    ensemble = load_work_dir_ensemble(three_members, with_attention=True)
    batches, _ = check_batches(ensemble, metadata, 5)
    with pytest.raises(ExportCheckError) as error:
        verify_export(path, ensemble, metadata, batches)
    message = str(error.value)
    assert 'tampered.onnx failed its check and was removed' in message
    assert 'probabilities differ from the eager ensemble' in message
    assert '\n' not in message
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_a_file_that_does_not_load_fails_its_check(three_members, tmp_path):
    from ktcli.deployment.ensemble_module import load_work_dir_ensemble
    from ktcli.deployment.export import ensemble_metadata
    from ktcli.deployment.export_check import ExportCheckError, check_batches, verify_export

    ensemble = load_work_dir_ensemble(three_members, models=[1])
    metadata = ensemble_metadata(ensemble, 'onnx')
    # Without the test split the check runs on random images.
    ensemble.config.test_dataloader.dataset.data_root = str(tmp_path / 'gone')
    batches, source = check_batches(ensemble, metadata, 2)
    assert source.startswith('2 random images') and list(batches) == ['batch 2', 'batch 1']
    path = tmp_path / 'broken.onnx'
    path.write_bytes(b'not a model')
    with pytest.raises(ExportCheckError, match='a fresh process could not run it'):
        verify_export(path, ensemble, metadata, batches)
    assert not path.exists()


def test_a_missing_work_dir_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(cli(), ['export', str(tmp_path / 'nowhere'), '--format', 'onnx'])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'is not a kt work dir' in lines[0] and 'kt train' in lines[0]


def test_members_that_cannot_share_an_input_are_refused(three_members, tmp_path):
    from mmengine.config import Config

    from ktcli.deployment.ensemble_module import assemble_ensemble
    from ktcli.errors import UserError
    from ktcli.stages.work_dir import trained_stages
    from registry_plugins import build_model_from_config

    config = trained_stages(three_members, [1])[0].config
    small, large = Config.fromfile(str(config)), Config.fromfile(str(config))
    crop = next(t for t in large.test_dataloader.dataset.pipeline if t.type == 'CenterCrop')
    crop.crop_size = 28
    members = [build_model_from_config(cfg) for cfg in (small, large)]
    with pytest.raises(UserError, match='differ in their test pipeline, channel order or classes'):
        assemble_ensemble(members, [small, large], [1, 2], ['a', 'b'])


def test_exported_metadata_is_one_json_blob(exported):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(exported['onnx'])).metadata_props}
    assert set(props) == {'kt.json'}
    assert json.loads(props['kt.json'])['format'] == 'onnx'
