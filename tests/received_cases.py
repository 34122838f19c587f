"""The received-work-dir and export cases of issue 16, defined once.

Each :class:`Case` tampers with a fresh copy of a trained 2-stage work dir (or of an
exported model) the way an attacker or a broken transfer would, names the kt command to
run on it, and says what must come out: the exit code and a phrase of the one stderr line.
``tests/test_received_cases.py`` runs every case; ``tests/received_sweep.py`` runs them and
prints the table of commands, exit codes and stderr lines.

Around every case the sentinel folder outside the work dir (``tests/received_copies.py``)
must be left exactly as it was: contents, times and listing.
"""
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .received_copies import (Received, decompression_bomb, edit_json, edit_onnx_metadata,
                              edit_records, edit_torchscript_metadata)


@dataclass(frozen=True)
class Case:
    """One tampering, the command run on it and what it must end with.

    Attributes:
        name (str): What is tampered with (the table's first column).
        prepare (callable): Tampers with the copy; returns the kt arguments.
        expect (str): A phrase of the stderr line.
        code (int): The exit code. Defaults to 2.
        after (callable, optional): More checks on the copy afterwards.
    """

    name: str
    prepare: Callable[[Received], list]
    expect: str
    code: int = 2
    after: Optional[Callable[[Received], None]] = field(default=None, compare=False)


def _config(k: int, change: Callable[[dict], None]) -> Callable[[Received], list]:
    """Change stage k's config.json, then predict from the work dir (builds every stage)."""
    def prepare(ctx: Received) -> list:
        edit_json(ctx.stage(k) / 'config.json', change)
        return ['predict', ctx.work, ctx.image]
    return prepare


def _set(path: str, value) -> Callable[[dict], None]:
    """Set ``a.b.c`` of a nested dict."""
    def change(data: dict) -> None:
        *parents, last = path.split('.')
        for key in parents:
            data = data[key]
        data[last] = value
    return change


def _manifest(change: Callable[[dict], Optional[object]], *command: str) -> Callable:
    def prepare(ctx: Received) -> list:
        edit_json(ctx.work / 'kt_manifest.json', change)
        return [command[0], ctx.work, *command[1:]]
    return prepare


def _stage_record(change: Callable[[dict], None]) -> Callable[[Received], list]:
    """Break stage 2's stage.json and drop the manifest, so that kt rebuilds from it."""
    def prepare(ctx: Received) -> list:
        edit_json(ctx.stage(2) / 'stage.json', change)
        (ctx.work / 'kt_manifest.json').unlink()
        return ['status', ctx.work]
    return prepare


def _metadata(change: Callable[[dict], Optional[object]], fmt: str = 'onnx') -> Callable:
    def prepare(ctx: Received) -> list:
        if fmt == 'onnx':
            edit_onnx_metadata(ctx.onnx, change)
        else:
            edit_torchscript_metadata(ctx.torchscript, change)
        return ['predict', ctx.onnx if fmt == 'onnx' else ctx.torchscript, ctx.image]
    return prepare


def _record_chain(value) -> Callable[[dict], None]:
    return lambda data: data.__setitem__('chain', value)


def _each_record(change: Callable[[dict], None]) -> Callable[[dict], None]:
    def changed(data: dict) -> None:
        for record in data['stages'].values():
            change(record)
    return changed


def _nothing_outside_created(ctx: Received) -> None:
    assert not (ctx.outside / 'by').exists() and not (ctx.outside.parent / 'by').exists()


def _dangling_lock(ctx: Received) -> list:
    lock = ctx.work / '.kt_manifest.lock'
    lock.unlink(missing_ok=True)
    lock.symlink_to(ctx.outside / 'created_by_lock')
    return ctx.train_args(2)


def _lock_target_absent(ctx: Received) -> None:
    assert not (ctx.outside / 'created_by_lock').exists()


def _link_to(target_of: Callable[[Received], Path], link_of: Callable[[Received], Path],
             command: Callable[[Received], list], manifest_gone: bool = False) -> Callable:
    def prepare(ctx: Received) -> list:
        link = link_of(ctx)
        link.unlink(missing_ok=True)
        link.symlink_to(target_of(ctx))
        if manifest_gone:
            (ctx.work / 'kt_manifest.json').unlink()
        return command(ctx)
    return prepare


def _fifo_record(ctx: Received) -> list:
    record = ctx.stage(2) / 'stage.json'
    record.unlink()
    os.mkfifo(record)
    (ctx.work / 'kt_manifest.json').unlink()
    return ['status', ctx.work]


def _running_stage_log_to_dev_zero(ctx: Received) -> list:
    edit_records(ctx, 2, lambda record: record.update(status='running', pid=None))
    log = next(ctx.stage(2).glob('*/*.log'))
    log.unlink()
    log.symlink_to('/dev/zero')
    return ['status', ctx.work]


def _bomb_in_dataset(command: str) -> Callable[[Received], list]:
    def prepare(ctx: Received) -> list:
        data = Path(shutil.copytree(ctx.demo_root, ctx.scratch / 'kt_demo'))
        folder = next(path for path in (data / 'images').iterdir() if path.is_dir())
        bomb = decompression_bomb(folder / 'aaa_bomb.png')
        with open(data / 'images.txt', 'a') as listing:
            listing.write(f'99999 {folder.name}/{bomb.name}\n')
        with open(data / 'train_test_split.txt', 'a') as split:
            split.write('99999 1\n')
        with open(data / 'image_class_labels.txt', 'a') as labels:
            labels.write(f'99999 {int(folder.name.split(".")[0])}\n')
        return ctx.on_tampered_data(data, command)
    return prepare


def _images(make: Callable[[Path], None], *extra: str) -> Callable[[Received], list]:
    def prepare(ctx: Received) -> list:
        image = ctx.scratch / 'picture.jpg'
        make(image)
        return ['visualize', ctx.work, '--images', image, '--out', ctx.scratch / 'grid.png',
                *extra]
    return prepare


def _visualize_out(name: str) -> Callable[[Received], list]:
    return lambda ctx: ['visualize', ctx.work, '--out', ctx.scratch / name]


def _forged_test_outputs(ctx: Received) -> list:
    """Stage 1's cached test outputs replaced by perfect logits, signed as kt signs them but
    under a key of the sender's (which is all a sender can do), not this machine's."""
    import hashlib
    import hmac
    import io

    import torch
    from ktcli.scoring.test_outputs import CACHE_MAGIC, split_digest
    from ktcli.stages.config_files import read_stage_config
    stage = ctx.stage(1)
    content = (stage / 'test_outputs.pt').read_bytes()
    outputs = torch.load(io.BytesIO(content[len(CACHE_MAGIC) + 65:]), weights_only=True)
    outputs['logits'] = torch.nn.functional.one_hot(outputs['labels'], 20).float() * 10
    buffer = io.BytesIO()
    torch.save(outputs, buffer)
    sha = hashlib.sha256(next(stage.glob('epoch_*.pth')).read_bytes()).hexdigest()
    split = split_digest(read_stage_config(stage / 'config.json'))
    identity = f'{stage.name}:{split}:{sha}\n'.encode()
    signature = hmac.new(b'the sender key', identity + buffer.getvalue(), 'sha256').hexdigest()
    (stage / 'test_outputs.pt').write_bytes(CACHE_MAGIC + signature.encode() + b'\n'
                                            + buffer.getvalue())
    return ['ensemble', ctx.work, '--json', ctx.scratch / 'figures.json']


def _real_figures(ctx: Received) -> None:
    figures = json.loads((ctx.scratch / 'figures.json').read_text())
    assert figures['stages'][0]['top1'] < 100


def _next_stage_elsewhere(ctx: Received) -> list:
    (ctx.work / 'stages' / ctx.planned_digest(3)).symlink_to(ctx.outside)
    return ctx.train_args(3)


def _exports_elsewhere(ctx: Received) -> list:
    (ctx.work / 'exports').symlink_to(ctx.outside)
    return ['export', ctx.work, '--format', 'torchscript']


def _stages_elsewhere(ctx: Received) -> list:
    moved = ctx.scratch / 'stages_elsewhere'
    shutil.move(str(ctx.work / 'stages'), str(moved))
    (ctx.work / 'stages').symlink_to(moved)
    (ctx.work / 'kt_manifest.json').unlink()
    return ['status', ctx.work]


# The 37 one-line cases of the issue (config, records, metadata, images, options, reads).
ONE_LINE_CASES = [
    Case('config.json: backbone.type a dict', _config(1, _set('model.backbone.type', {'a': 1})),
         'has a dict as the type at model.backbone'),
    Case('config.json: backbone.type a list', _config(1, _set('model.backbone.type', ['x'])),
         'has a list as the type at model.backbone'),
    Case('config.json: backbone.type "SGD" (registered, not a model)',
         _config(1, _set('model.backbone.type', 'SGD')), 'does not build (KeyError'),
    Case('config.json: custom_imports a list', _config(1, _set('custom_imports', ['os'])),
         "imports ['os'] (custom_imports)"),
    Case('config.json: custom_imports a string', _config(1, _set('custom_imports', 'os')),
         "imports 'os' (custom_imports)"),
    Case('config.json: no model', _config(2, lambda data: data.pop('model')),
         'has no model (an object with a type)'),
    Case('manifest: chain [1, 2]', _manifest(_record_chain([1, 2]), 'ensemble'),
         'chain must be a list of stage digests', code=0),
    Case('manifest: a record that is a string',
         _manifest(lambda data: data['stages'].__setitem__(data['chain'][0], 'x'), 'ensemble'),
         'must be a stage record (a JSON object), not str', code=0),
    Case('manifest: a record that is a list',
         _manifest(lambda data: data['stages'].__setitem__(data['chain'][0], []), 'ensemble'),
         'must be a stage record (a JSON object), not list', code=0),
    Case('manifest: checkpoint 5',
         _manifest(_each_record(lambda record: record.__setitem__('checkpoint', 5)), 'ensemble'),
         'checkpoint must be an epoch_N.pth', code=0),
    Case('stage.json: train_seconds a string (manifest rebuilt from it)',
         _stage_record(lambda record: record.__setitem__('train_seconds', 'soon')),
         'train_seconds must be a number of seconds', code=0),
    Case('kt.json: []', _metadata(lambda data: []), 'kt.json is not an object'),
    Case('kt.json: {}', _metadata(lambda data: {}), 'kt.json has no preprocessing object'),
    Case('kt.json: no preprocessing', _metadata(lambda data: data.pop('preprocessing')),
         'kt.json has no preprocessing object'),
    Case('kt.json: unknown interpolation',
         _metadata(_set('preprocessing.interpolation', 'cubic2')),
         'preprocessing.interpolation must be one of'),
    Case('kt.json: resize [0, 0]', _metadata(_set('preprocessing.resize', [0, 0])),
         'preprocessing.resize must be [width, height] of 1 to 2048'),
    Case('kt.json: resize [-5, -5]', _metadata(_set('preprocessing.resize', [-5, -5])),
         'preprocessing.resize must be [width, height] of 1 to 2048'),
    Case('kt.json: resize [60000, 60000]',
         _metadata(_set('preprocessing.resize', [60000, 60000])),
         'preprocessing.resize must be [width, height] of 1 to 2048'),
    Case('kt.json: classes null', _metadata(_set('classes', None)),
         'classes must be a list of names'),
    Case('kt.json: unknown output names', _metadata(_set('outputs', ['nope'])),
         "names outputs ['nope'], but the model has"),
    Case('kt.json: a string mean', _metadata(_set('preprocessing.mean', 'abc')),
         'preprocessing.mean must be 3 finite numbers'),
    Case('kt.json: channel_order 5', _metadata(_set('preprocessing.channel_order', 5)),
         'preprocessing.channel_order must be RGB or BGR'),
    Case('kt.json (TorchScript): crop [0, 0]',
         _metadata(_set('preprocessing.crop', [0, 0]), 'torchscript'),
         'preprocessing.crop must be [width, height]'),
    Case('kt.json (TorchScript): input.size not the crop',
         _metadata(_set('input.size', [999, 999]), 'torchscript'), 'input.size must be'),
    Case('a 20000 x 20000 PNG in the dataset: kt data check', _bomb_in_dataset('check'),
         '1 unreadable image(s)'),
    Case('a 20000 x 20000 PNG in the dataset: kt train', _bomb_in_dataset('train'),
         '1 unreadable image(s)'),
    Case('kt visualize --images a non-image', _images(lambda path: path.write_text('hello')),
         'as an image'),
    Case('kt visualize --images an empty file', _images(lambda path: path.write_bytes(b'')),
         'as an image'),
    Case('kt visualize --out without a suffix', _visualize_out('grid'),
         'needs an image suffix'),
    Case('kt visualize --out an unknown suffix', _visualize_out('grid.xyz'),
         'needs an image suffix'),
    Case('kt ensemble --json a folder',
         lambda ctx: ['ensemble', ctx.work, '--json', ctx.scratch], 'Is a directory'),
    Case('kt export --device bogus',
         lambda ctx: ['export', ctx.work, '--format', 'onnx', '--device', 'bogus'],
         "--device 'bogus' is not a device"),
    Case('kt predict --device bogus',
         lambda ctx: ['predict', ctx.onnx, ctx.image, '--device', 'bogus'],
         "--device 'bogus' is not a device"),
    Case('kt export --device cuda (no GPU here)',
         lambda ctx: ['export', ctx.work, '--format', 'onnx', '--device', 'cuda'],
         'needs a GPU'),
    Case('kt predict --device cuda (no GPU here)',
         lambda ctx: ['predict', ctx.onnx, ctx.image, '--device', 'cuda'], 'needs a GPU'),
    Case('stage.json a link to /dev/zero',
         _link_to(lambda ctx: Path('/dev/zero'), lambda ctx: ctx.stage(2) / 'stage.json',
                  lambda ctx: ['status', ctx.work], manifest_gone=True),
         'stage.json is a symbolic link', code=0),
    Case("a running stage's log a link to /dev/zero", _running_stage_log_to_dev_zero, '',
         code=0),
    Case('stage.json a FIFO', _fifo_record, 'stage.json is not a regular file (a FIFO)', code=0),
]

# The attacks of the issue that run in forked processes (the others need a real kt start
# or a training run: tests/test_received_work_dir.py).
ATTACK_CASES = [
    Case('record dir "../../outside/by/kt" (kt train, all reused)',
         lambda ctx: _manifest(_each_record(lambda record: record.__setitem__(
             'dir', '../../outside/by/kt')), 'status')(ctx) and ctx.train_args(2),
         "dir must be 'stages/", code=0, after=_nothing_outside_created),
    Case('record dir absolute',
         lambda ctx: _manifest(_each_record(lambda record: record.__setitem__(
             'dir', str(ctx.outside / 'by'))), 'status')(ctx), "dir must be 'stages/", code=0,
         after=_nothing_outside_created),
    Case('chain digest into another work dir (kt ensemble)',
         lambda ctx: _manifest(_record_chain([
             f'../../{ctx.outside.name}/other_work/stages/0123456789abcdef']), 'ensemble')(ctx),
         'chain must be a list of stage digests', code=0),
    Case('record checkpoint an absolute path',
         lambda ctx: _manifest(_each_record(lambda record: record.__setitem__(
             'checkpoint', str(ctx.outside / 'victim.txt'))), 'ensemble')(ctx),
         'checkpoint must be an epoch_N.pth', code=0),
    Case('a dangling .kt_manifest.lock link (kt train)', _dangling_lock,
         '.kt_manifest.lock is a symbolic link', after=_lock_target_absent),
    Case('default_scope "this" (imports any module by name)',
         _config(1, _set('default_scope', 'this')), "has default_scope 'this'"),
    Case('a _scope_ "this" inside the model', _config(1, _set('model.backbone._scope_', 'this')),
         "sets the scope 'this' at model.backbone"),
    Case('_base_ in a stage config', _config(1, _set('_base_', '../../outside/evil.py')),
         'inherits other files (_base_'),
    Case('a stage checkpoint linked to a file outside',
         _link_to(lambda ctx: ctx.outside / 'victim.txt',
                  lambda ctx: next(ctx.stage(1).glob('epoch_*.pth')),
                  lambda ctx: ['ensemble', ctx.work]), 'is a symbolic link'),
    Case("forged cached test outputs (100% for stage 1)", _forged_test_outputs, '', code=0,
         after=_real_figures),
    Case("the next stage's folder a link out of the work dir (kt train --n 3)",
         _next_stage_elsewhere, 'is a symbolic link'),
    Case('the exports folder a link out of the work dir (kt export)', _exports_elsewhere,
         'exports is a symbolic link'),
    Case('the stages folder a link out of the work dir',
         lambda ctx: _stages_elsewhere(ctx), 'stages is a symbolic link'),
]


CASES = ONE_LINE_CASES + ATTACK_CASES
