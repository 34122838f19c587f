"""kt export --dtype int8 / fp16: the accuracy check, its figures in the file, kt predict on it.

The work dir is the 3-member one of tests/test_export.py (stages 1 and 2 trained for one
epoch at 32 px, stage 3 untrained), copied so that the accuracy check's cached test outputs
stay out of the shared fixture. Its 32 px models are far too weak for the standard
thresholds (99% agreement): the passing export relaxes them, and a second real export,
held to an agreement above the one the first measured, must miss, leave no file and exit 2
with one line.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from .test_export import cli
from .test_predict import cli as predict_cli

CALIBRATION_IMAGES = 16


@pytest.fixture(scope='module')
def work_dir(three_members, tmp_path_factory) -> Path:
    return Path(shutil.copytree(three_members, tmp_path_factory.mktemp('precision') / 'work',
                                symlinks=True))


@pytest.fixture(scope='module')
def int8_export(work_dir) -> tuple:
    """The int8 file, exported through the command with thresholds any file meets."""
    path = work_dir.parent / 'exports' / 'ensemble_int8.onnx'
    result = CliRunner().invoke(cli(), [
        'export', str(work_dir), '--format', 'onnx', '--dtype', 'int8', '--out', str(path),
        '--calibration-images', str(CALIBRATION_IMAGES), '--min-agreement', '0',
        '--top1-tolerance', '100'])
    assert result.exit_code == 0, result.output + result.stderr
    return path, ' '.join(result.output.split())


def read_metadata(path: Path) -> dict:
    from ktcli.deployment.export_verifier import ExportedModel
    return ExportedModel(path).metadata


def measured_figures(path: Path, work_dir: Path) -> dict:
    """Agreement and top-1 of the file against the eager ensemble, computed here."""
    from ktcli.deployment.ensemble_module import load_work_dir_ensemble
    from ktcli.deployment.export_verifier import ExportedModel, to_model_input, torch_runner
    from ktcli.deployment.split_images import labelled_test_batches

    model = ExportedModel(path)
    ensemble = load_work_dir_ensemble(work_dir)
    eager = torch_runner(ensemble.module)
    predicted, reference, labels = [], [], []
    for images, batch_labels in labelled_test_batches(ensemble.config, 16):
        inputs = to_model_input(images, model.metadata)
        predicted.append(model(inputs)[0].argmax(1))
        reference.append(eager(inputs)[0].argmax(1))
        labels.append(batch_labels)
    predicted, reference, labels = map(np.concatenate, (predicted, reference, labels))
    return dict(images=len(labels), agreement=100 * np.mean(predicted == reference),
                fp32_top1=100 * np.mean(reference == labels),
                top1=100 * np.mean(predicted == labels))


def test_int8_file_carries_its_real_accuracy_figures(int8_export, work_dir, exported):
    path, log = int8_export
    metadata = read_metadata(path)
    assert metadata['dtype'] == 'int8'
    assert metadata['quantisation'] | dict(mode='static', format='QDQ',
                                           calibration_images=CALIBRATION_IMAGES) \
        == metadata['quantisation']
    stored = metadata['accuracy_check']
    assert stored['min_agreement'] == 0 and stored['top1_tolerance'] == 100
    measured = measured_figures(path, work_dir)
    assert stored['images'] == measured['images'] == 40
    for key in ('agreement', 'fp32_top1', 'top1'):
        assert stored[key] == pytest.approx(measured[key], abs=1e-3), key
    assert stored['delta'] == pytest.approx(stored['top1'] - stored['fp32_top1'], abs=1e-3)
    # The difference with its paired interval, from counts.
    comparison = stored['comparison']
    assert (comparison['first'], comparison['second'], comparison['images']) == ('int8', 'fp32',
                                                                                 40)
    assert 100 * comparison['first_correct'] / 40 == stored['top1']
    assert 100 * comparison['second_correct'] / 40 == stored['fp32_top1']
    assert comparison['difference'] == stored['delta']
    assert comparison['ci_low'] <= stored['delta'] <= comparison['ci_high']
    assert comparison['first_only'] + comparison['second_only'] <= \
        round(40 * (100 - stored['agreement']) / 100)
    assert comparison['verdict'] in log and 'McNemar p' in log
    # The fp32 graph's check, then the figures, as printed.
    assert 'onnx int8 export of stages 1, 2, 3' in log and 'its fp32 graph checked' in log
    assert 'int8 accuracy check in a fresh process on the 40 test images' in log
    assert f'{stored["agreement"]:.2f}% (≥ 0%)' in log and f'{stored["top1"]:.2f}%' in log
    # Quantised: far smaller than the fp32 file of the same ensemble.
    assert path.stat().st_size < 0.5 * exported['onnx'].stat().st_size


def test_an_int8_file_that_misses_its_threshold_is_not_kept(int8_export, work_dir, tmp_path):
    agreement = read_metadata(int8_export[0])['accuracy_check']['agreement']
    assert agreement < 100, 'the tiny int8 ensemble agrees on every image: raise the bar'
    path = tmp_path / 'missed.onnx'
    result = CliRunner().invoke(cli(), [
        'export', str(work_dir), '--format', 'onnx', '--dtype', 'int8', '--out', str(path),
        '--calibration-images', str(CALIBRATION_IMAGES),
        '--min-agreement', str(min(100, agreement + 1)), '--top1-tolerance', '100'])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: missed.onnx (int8) missed its '
                                                   'accuracy check and was not kept')
    assert f'agrees with the fp32 ensemble on {agreement:.2f}%' in lines[0]
    assert '--calibration-images' in lines[0] and '--dtype fp32' in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_kt_predict_runs_the_int8_file(int8_export, demo_root):
    images = sorted((demo_root / 'images').rglob('*.jpg'))[:3]
    result = CliRunner().invoke(predict_cli(), ['predict', str(int8_export[0]),
                                                *map(str, images), '--json', '--threads', '1'])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r['image']).name for r in records] == [image.name for image in images]
    for record in records:
        probabilities = [p['probability'] for p in record['predictions']]
        assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] > 0


def test_fp16_copy_runs_close_to_fp32(exported, tmp_path):
    from ktcli.deployment.export_verifier import ExportedModel
    from ktcli.deployment.quantisation import convert_fp16

    fp32 = exported['onnx']
    convert_fp16(fp32, tmp_path / 'fp16.onnx')
    inputs = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    expected, actual = ExportedModel(fp32)(inputs), ExportedModel(tmp_path / 'fp16.onnx')(inputs)
    assert actual[0].dtype == np.float32 and actual[0].shape == (4, 20)
    assert np.abs(actual[0] - expected[0]).max() < 1e-2


def test_precision_options_that_do_not_apply_are_refused(work_dir, tmp_path):
    cases = [(['--format', 'torchscript', '--dtype', 'int8'], '--dtype int8 needs --format onnx'),
             (['--format', 'onnx', '--calibration-images', '8'], 'applies to --dtype int8'),
             (['--format', 'onnx', '--min-agreement', '90'], 'apply to --dtype int8 and fp16')]
    for options, message in cases:
        result = CliRunner().invoke(cli(), ['export', str(work_dir), *options,
                                            '--out', str(tmp_path / 'x.onnx')])
        assert result.exit_code == 2, options
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_onnx_sessions_are_set_up_for_speed(int8_export, monkeypatch):
    import onnxruntime

    from ktcli.deployment.export_verifier import ExportedModel
    from ktcli.cpus import available_cpus

    sessions = []
    session_type = onnxruntime.InferenceSession

    def recording_session(*args, **kwargs):
        sessions.append(session_type(*args, **kwargs))
        return sessions[-1]

    monkeypatch.setattr(onnxruntime, 'InferenceSession', recording_session)
    ExportedModel(int8_export[0])
    ExportedModel(int8_export[0], threads=1)
    options = [session.get_session_options() for session in sessions]
    assert [o.intra_op_num_threads for o in options] == [available_cpus(), 1]
    for option in options:
        assert option.graph_optimization_level == \
            onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        assert option.inter_op_num_threads == 1
        assert option.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
