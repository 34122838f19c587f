"""Fuzzing what kt reads from a received work dir or export (Hypothesis).

Each example takes a fresh copy of the session's trained work dir (or of an exported
model), mutates fields of one JSON file kt reads (type swaps, missing keys, ``..`` and
absolute paths, huge numbers, scopes and ``_base_``) or replaces the file itself (a link
out of the folder, a FIFO, ``/dev/zero``, an empty or truncated file, a folder), runs the
commands that read that file in processes of their own, and asserts that each ends with
exit 0 or 2, at most one line on stderr, no traceback, no payload run and nothing outside
the work dir read or written (a sentinel folder, its files' contents and times, is left as
it was). Derandomised and bounded (see ``EXAMPLES``) so the suite stays in its budget.

The fuzz of meanings (issue 26) draws well-typed but hostile *values* for every training
setting a stage record keeps, and for its Slurm job id: paths (absolute, ``/proc/self/cwd``,
``..``) to a planted model config whose code would leave a marker, URLs of a loopback
listener, options that set ``*dir*`` and ``*path*`` keys, the id of a running job that kt
did not submit. It runs the commands that act on them (``kt status``, ``kt distill`` and
``kt train`` with fake Slurm tools first on PATH, so that they submit rather than train)
and asserts, beside the above, that the listener saw no connection, ``scancel`` was never
called, and no config kt wrote names the outside folder, the URL or ``/proc``.
"""
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .kt_processes import REPO
from .received_copies import (PAYLOAD_MARKER, ZEN, edit_onnx_metadata, edit_records,
                              edit_torchscript_metadata, received, snapshot)

EXAMPLES = 20
TARGETS = ('manifest', 'stage.json', 'config.json', 'kt.json (onnx)', 'kt.json (torchscript)')
FILE_MUTATIONS = ('link to a file outside', 'link to /dev/zero', 'FIFO', 'empty', 'truncated',
                  'folder')


@pytest.fixture(scope='module')
def template(tmp_path_factory, trained_work_dir, demo_root, exported):
    """A pristine received copy: every file the fuzz mutates, and the paths in each."""
    ctx = received(tmp_path_factory.mktemp('fuzz_template'), trained_work_dir, demo_root,
                   exported)
    documents = {target: _read(ctx, target) for target in TARGETS}
    paths = {target: list(_json_paths(document)) for target, document in documents.items()}
    return ctx, paths


def _target_file(ctx, target: str) -> Path:
    return dict(manifest=ctx.work / 'kt_manifest.json', **{
        'stage.json': ctx.stage(2) / 'stage.json', 'config.json': ctx.stage(1) / 'config.json',
        'kt.json (onnx)': ctx.onnx, 'kt.json (torchscript)': ctx.torchscript})[target]


def _read(ctx, target: str) -> Any:
    if target.startswith('kt.json'):
        found = []
        edit = edit_onnx_metadata if 'onnx' in target else edit_torchscript_metadata
        edit(_target_file(ctx, target), lambda data: found.append(data))
        return found[0]
    return json.loads(_target_file(ctx, target).read_text())


def _json_paths(value: Any, prefix: Tuple = ()) -> List[Tuple]:
    """The path of every node of a JSON document (the root too)."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _json_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _json_paths(item, prefix + (index,))
    return paths


def _values(outside: str) -> st.SearchStrategy:
    """Values an attacker or a broken transfer puts in a field."""
    return st.one_of(
        st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
        st.sampled_from([0, -1, 2 ** 31, 2 ** 63, 60000, 1e308, -1e308, float('nan')]),
        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
        st.sampled_from(['..', '../..', '../../outside', '/etc/passwd', outside,
                         outside + '/victim.txt', '../../outside/evil.py', 'this', 'os.system',
                         'stages/0123456789abcdef', '0123456789abcdef', 'SGD', 'ResNet',
                         'mmpretrain.ResNet', 'registry_plugins', 'epoch_1.pth']),
        st.lists(st.integers(-5, 70000), max_size=3),
        st.dictionaries(st.sampled_from(['type', '_base_', '_scope_', 'imports', 'a']),
                        st.sampled_from(['this', 'os.system', '../../outside/evil.py', 1]),
                        max_size=2))


@st.composite
def mutations(draw, paths: dict, outside: str) -> Tuple[str, list]:
    """A target file and 1-3 mutations of it."""
    target = draw(st.sampled_from(TARGETS))
    if draw(st.integers(0, 5)) == 0:
        return target, [('file', draw(st.sampled_from(FILE_MUTATIONS)))]
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths[target]))
        kind = draw(st.sampled_from(['set', 'set', 'delete', 'add']))
        if kind == 'add':
            key = draw(st.sampled_from(['_base_', 'custom_imports', '_scope_', 'type',
                                        'default_scope', 'filename', 'dir', 'checkpoint']))
            changes.append(('add', path, key, draw(_values(outside))))
        else:
            changes.append((kind, path, draw(_values(outside))))
    return target, changes


def _apply(document: Any, change: tuple) -> Any:
    """The document with one change applied (it may replace the root)."""
    kind, path = change[0], change[1]
    if not path and kind != 'add':
        return None if kind == 'delete' else change[2]
    parent = document
    for key in path[:-1] if kind != 'add' else path:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return document  # an earlier change removed the way there
    if kind == 'add':
        if isinstance(parent, dict):
            parent[change[2]] = change[3]
        return document
    try:
        if kind == 'delete':
            del parent[path[-1]]
        else:
            parent[path[-1]] = change[2]
    except (KeyError, IndexError, TypeError):
        pass
    return document


def _mutate(ctx, target: str, changes: list) -> None:
    path = _target_file(ctx, target)
    if target == 'stage.json':
        (ctx.work / 'kt_manifest.json').unlink()  # so that kt rebuilds it from the stage dirs
    if changes[0][0] == 'file':
        _replace_file(ctx, path, changes[0][1])
        return

    def change(data):
        for one in changes:
            data = _apply(data, one)
        return data

    if target.startswith('kt.json'):
        edit = edit_onnx_metadata if 'onnx' in target else edit_torchscript_metadata
        edit(path, change)
    else:
        path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _replace_file(ctx, path: Path, how: str) -> None:
    content = path.read_bytes()
    path.unlink()
    if how == 'link to a file outside':
        path.symlink_to(ctx.outside / 'victim.txt')
    elif how == 'link to /dev/zero':
        path.symlink_to('/dev/zero')
    elif how == 'FIFO':
        os.mkfifo(path)
    elif how == 'folder':
        path.mkdir()
    else:
        path.write_bytes(b'' if how == 'empty' else content[:len(content) // 2])


def _commands(ctx, target: str) -> List[list]:
    """The commands that read the mutated file."""
    if target.startswith('kt.json'):
        return [['predict', ctx.onnx if 'onnx' in target else ctx.torchscript, ctx.image]]
    if target == 'config.json':
        return [['predict', ctx.work, ctx.image], ['ensemble', ctx.work]]
    return [['status', ctx.work], ['ensemble', ctx.work]]


def _ends_in_one_line(result, what: str, command: list) -> Tuple[str, str]:
    """Assert that a command succeeded or refused in one line without a traceback; return
    its output and the description a failed assertion prints."""
    output = result.stdout + result.stderr
    where = f'{what} -> kt {" ".join(map(str, command))}: {output[-2000:]}'
    assert result.returncode in (0, 2), where
    assert 'Traceback' not in output, where
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 1, where
    return output, where


def test_fuzzed_work_dirs_and_exports_end_in_one_line(template, kt_server, tmp_path_factory,
                                                     trained_work_dir, demo_root, exported):
    pristine, paths = template

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutations(paths, str(pristine.outside)))
    def example(mutation):
        target, changes = mutation
        base = tmp_path_factory.mktemp('fuzz')
        ctx = received(base, trained_work_dir, demo_root, exported)
        before = snapshot(ctx.outside)
        _mutate(ctx, target, changes)
        for command in _commands(ctx, target):
            # A fuzzed command that hangs is killed well before the session's limit.
            result = kt_server.run(*command, timeout=180)
            output, where = _ends_in_one_line(result, f'{target} {changes}', command)
            assert ZEN not in output and not ctx.marker.exists(), where
            assert PAYLOAD_MARKER not in output, where
            assert snapshot(ctx.outside) == before, where
        shutil.rmtree(base, ignore_errors=True)

    example()


# Examples per field: every settings field of a stage record (data_root too, which kt never
# records), and its Slurm job id; more for the fields whose values name files, URLs and
# options. 26 examples of 3 commands: about 25 s on 2 cores.
MEANING_EXAMPLES = dict(backbone=3, pretrained=3, cfg_options=3)
FOREIGN_JOB = '4242'
MEANING_FIELDS = ('backbone', 'pretrained', 'cfg_options', 'vis_backends', 'dataset',
                  'data_root', 'data_fingerprint', 'weighting', 'num_classes', 'img_size',
                  'batch_size', 'processes', 'epochs', 'output_stride', 'frozen_stages', 'seed',
                  'lr', 'alpha', 'amp', 'job_id')


def _hostile_values(field: str, work: Path, outside: str, url: str) -> st.SearchStrategy:
    """Values of the right type whose meaning is hostile, for one field of a stage record."""
    from ktcli.stages.backbones import MODEL_CONFIGS
    evil = str(work / 'evil')
    names = [evil, outside, outside + '/victim.txt', '/etc/passwd', '/dev/zero',
             '/proc/self/cwd/' + os.path.relpath(evil, REPO),
             os.path.relpath(evil, MODEL_CONFIGS), '../../outside/evil', '..', url,
             'file:///etc/passwd', f'timm/{os.path.relpath(evil, MODEL_CONFIGS)}',
             'timm//etc/passwd', f'resnet18_tiny,{evil}', 'pretrained-file:../../victim.txt',
             'pretrained-url:' + url]
    options = [[[key, outside]] for key in (
        'work_dir', 'default_hooks.checkpoint.out_dir', 'default_hooks.logger.out_dir',
        'train_dataloader.dataset.data_root', 'model.backbone.init_cfg.checkpoint',
        'load_from')] + [[['visualizer.vis_backends', [dict(type='LocalVisBackend',
                                                            save_dir=outside)]]],
                         [['custom_imports', dict(imports=['os'])]],
                         [['model.backbone.init_cfg', dict(type='Pretrained', checkpoint=url)]]]
    values = dict(
        cfg_options=options, vis_backends=[[outside], ['tensorboard', url], ['../x']],
        data_fingerprint=[dict(dataset=outside, train='0' * 16, test='0' * 16, images=1),
                          dict(dataset='demo', train='../../x', test=outside, images=1)],
        job_id=[FOREIGN_JOB], num_classes=[2 ** 40, -1], img_size=[60000, -5],
        batch_size=[0, 2 ** 40], processes=[0, 2 ** 31], epochs=[0, 2 ** 40],
        output_stride=[7, 1], frozen_stages=[-100, 1000], seed=[-1, 2 ** 62],
        lr=[-1.0, 1e308], alpha=[1e308, -1e308], amp=[True, False])
    return st.sampled_from(values.get(field, names))


def _written_configs(work: Path) -> str:
    """Every config kt keeps in the work dir, as text."""
    return ''.join(path.read_text(errors='replace') for pattern in ('*/*/config.json',
                                                                   '*/*/config.py')
                   for path in work.glob(pattern) if not path.is_symlink())


@pytest.mark.parametrize('field', MEANING_FIELDS)
def test_hostile_setting_values_do_nothing(field, slurm_kt, tmp_path_factory, trained_work_dir,
                                           demo_root, exported):
    server, state = slurm_kt
    (state / 'squeue.txt').write_text(f'{FOREIGN_JOB}|RUNNING|None\n')
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    listener.setblocking(False)
    url = f'http://127.0.0.1:{listener.getsockname()[1]}/weights.pth'
    base = tmp_path_factory.mktemp('meanings')
    # Every example's copy is at the same place, so the drawn paths name its files.
    work, outside = base / 'copy' / 'work', base / 'copy' / 'outside'

    @settings(max_examples=MEANING_EXAMPLES.get(field, 1), deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(_hostile_values(field, work, str(outside), url))
    def example(value):
        shutil.rmtree(base / 'copy', ignore_errors=True)
        ctx = received(base / 'copy', trained_work_dir, demo_root, exported)
        (ctx.work / 'evil_kt.py').write_text(
            f'import pathlib\npathlib.Path({str(ctx.marker)!r}).touch()\nx = 1\n')
        before = snapshot(ctx.outside)

        def change(record: dict) -> None:
            if field == 'job_id':
                record.update(status='queued', job_id=value)
            else:
                record['settings'][field] = value

        for k in (1, 2):
            edit_records(ctx, k, change)
        commands = [['status', ctx.work],
                    ['distill', ctx.work, '--epochs', '1', '--launcher', 'slurm',
                     '--data-root', ctx.demo_root],
                    ctx.train_args(2, '--launcher', 'slurm')]
        for command in commands:
            result = server.run(*command)
            output, where = _ends_in_one_line(result, f'{field}={value!r}', command)
            assert not ctx.marker.exists() and PAYLOAD_MARKER not in output, where
            assert snapshot(ctx.outside) == before, where
            assert not (state / 'scancel.calls').exists(), where
            with pytest.raises(BlockingIOError):
                listener.accept()
            configs = _written_configs(ctx.work)
            assert str(ctx.outside) not in configs and url not in configs, where
            assert '/proc/self' not in configs, where

    try:
        example()
    finally:
        listener.close()
