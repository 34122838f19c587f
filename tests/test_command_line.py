"""The kt command line itself: fast help and failures, option panels, several --cfg-options
after one flag, shell completion, and the one-line failures of an offline download."""
import subprocess
import sys

import pytest
from mmengine.config import Config
from typer.testing import CliRunner

from ktcli.main import app, expand_multi_value_options

from .conftest import REPO

# Runs kt in a fresh interpreter and says which heavy libraries the command imported.
IMPORTS_AFTER = '''
import sys
from ktcli.main import app
try:
    app({args!r}, prog_name='kt')
except SystemExit as stop:
    code = stop.code
print('exit', code, 'heavy', sorted(m for m in ('torch', 'mmengine', 'mmpretrain')
                                     if m in sys.modules))
'''


def imports_after(*args: str) -> str:
    result = subprocess.run([sys.executable, '-c', IMPORTS_AFTER.format(args=list(args))],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize('args, code', [
    (['--help'], 0),
    (['train', '--help'], 0),
    (['ablate', 'n', '--help'], 0),
    (['export', '--help'], 0),
    # The headline command without its data: one line, before torch loads.
    (['train', '--dataset', 'air', '--n', '5', '--alpha', '0.5', '--data-root', '/no/air'], 2),
    (['train', '--dataset', 'demo', '--alpha', 'nan'], 2),
], ids=['kt', 'train', 'ablate n', 'export', 'no data', 'bad flag'])
def test_help_and_fast_failures_load_no_deep_learning_library(args, code):
    assert imports_after(*args) == f'exit {code} heavy []'


def test_train_help_groups_its_options_in_panels():
    result = CliRunner().invoke(app, ['train', '--help'], terminal_width=120)
    assert result.exit_code == 0
    panels = [line.strip('╭─ ').split(' ─')[0] for line in result.output.splitlines()
              if line.startswith('╭')]
    assert panels == ['Options', 'Sequence', 'Data', 'Model', 'Schedule', 'Runner and output']


def test_shell_completion_is_offered():
    result = CliRunner().invoke(app, ['--help'], terminal_width=120)
    assert '--install-completion' in result.output and '--show-completion' in result.output


def test_several_cfg_options_follow_one_flag_as_in_mmengine():
    assert expand_multi_value_options(
        ['train', '--cfg-options', 'a.b=1', 'c=[1,2]', '--n', '2', '--cfg-options', 'd=x']) == [
        'train', '--cfg-options', 'a.b=1', '--cfg-options', 'c=[1,2]', '--n', '2',
        '--cfg-options', 'd=x']
    # What is not KEY=VALUE is left to the parser (here, a bad value it reports).
    assert expand_multi_value_options(['train', '--cfg-options', 'novalue', 'x=1']) == [
        'train', '--cfg-options', 'novalue', 'x=1']
    assert expand_multi_value_options(['train', '--cfg-options']) == ['train', '--cfg-options']


def test_two_cfg_options_after_one_flag_both_reach_the_config(demo_root):
    result = CliRunner().invoke(app, [
        'train', '--dataset', 'demo', '--data-root', str(demo_root), '--backbone',
        'resnet18_tiny', '--n', '1', '--work-dir', '/tmp/kt_never_written', '--dry-run',
        '--cfg-options', 'train_cfg.max_epochs=1', 'model.head.num_classes=abc'])
    assert result.exit_code == 2
    assert ('error: --cfg-options train_cfg.max_epochs=1 model.head.num_classes=abc break the '
            'config') in result.stderr


def test_an_unreachable_pretrained_url_is_one_line_naming_the_fixes(tmp_path, monkeypatch):
    from registry_plugins import CheckpointError
    from registry_plugins.checkpoint_loading import load_checkpoint_url

    monkeypatch.setenv('KT_CHECKPOINT_CACHE', str(tmp_path / 'cache'))
    url = 'http://127.0.0.1:9/resnet50_in1k.pth'  # the discard port: nothing listens
    with pytest.raises(CheckpointError) as error:
        load_checkpoint_url(url)
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith(f'cannot download the pretrained weights {url} (')
    assert '--pretrained FILE' in message and str(tmp_path / 'cache') in message
    assert not any((tmp_path / 'cache').iterdir())


def test_top5_is_dropped_for_datasets_of_fewer_than_5_classes():
    from ktcli.runner import fit_topk_to_classes

    evaluator = dict(type='Accuracy', topk=(1, 5))
    cfg = Config(dict(model=dict(head=dict(num_classes=3)), val_evaluator=evaluator,
                      test_evaluator=[evaluator, dict(type='SingleLabelMetric')]))
    fit_topk_to_classes(cfg)
    assert cfg.val_evaluator.topk == (1, ) and cfg.test_evaluator[0].topk == (1, )
    cfg.model.head.num_classes = 5
    cfg.val_evaluator.topk = (1, 5)
    fit_topk_to_classes(cfg)
    assert cfg.val_evaluator.topk == (1, 5)
