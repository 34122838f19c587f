"""The cases of issue 26: well-typed values of a received file that would *do* something.

Each :class:`~tests.received_cases.Case` here sets a field to a value of the right type whose
meaning is hostile (a backbone that is a path, options that set folders, a URL, an archive
that climbs out, forged outputs under a kept signature, a deep JSON file, a FIFO in the
data, a model that fails when run, a lock that is a folder) and names the command that
would act on it; ``tests/test_received_cases.py`` runs them in processes of their own like
the cases of issue 16 (D7 and D16, which need fake Slurm tools on PATH, and the ones tested
below the command line are in ``tests/test_received_meanings.py``; D2, the options a record
names, in ``tests/test_received_work_dir.py``, beside the ``_base_`` they could name).
"""
import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import zipfile
from pathlib import Path
from typing import Callable

from .received_cases import Case
from .received_copies import Received, edit_json, edit_records

DEEP_JSON = '[' * 100000


def _settings(change: Callable[[Received], dict]) -> Callable[[Received], None]:
    """Set fields of every stage's settings, in the manifest and in each stage.json."""
    def apply(ctx: Received) -> None:
        fields = change(ctx)
        for k in (1, 2):
            edit_records(ctx, k, lambda record: record['settings'].update(fields))
    return apply


def _distill(change: Callable[[Received], dict]) -> Callable[[Received], list]:
    def prepare(ctx: Received) -> list:
        _settings(change)(ctx)
        return ['distill', ctx.work, '--epochs', '1', '--data-root', ctx.demo_root]
    return prepare


def _planted_model_config(ctx: Received) -> Path:
    """``W/evil_kt.py``: the marker's payload where a backbone named ``W/evil`` finds it."""
    (ctx.work / 'evil_kt.py').write_text(f'import pathlib\npathlib.Path({str(ctx.marker)!r})'
                                         '.touch()\nx = 1\n')
    return ctx.work / 'evil'


def _backbone_via_proc(ctx: Received) -> dict:
    # The forked command runs in the repository: /proc/self/cwd/<relative path> is W/evil.
    from .kt_processes import REPO
    return dict(backbone='/proc/self/cwd/' + os.path.relpath(_planted_model_config(ctx), REPO))


def _backbone_climbing(ctx: Received) -> dict:
    from ktcli.stages.backbones import MODEL_CONFIGS
    return dict(backbone=os.path.relpath(_planted_model_config(ctx), MODEL_CONFIGS))


def _listener(ctx: Received) -> str:
    """A loopback listener the command must never reach; its URL."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(4)
    server.setblocking(False)
    ctx.listener = server
    return f'http://127.0.0.1:{server.getsockname()[1]}/weights.pth'


def _no_connection(ctx: Received) -> None:
    try:
        connection, _ = ctx.listener.accept()
    except BlockingIOError:
        return
    finally:
        ctx.listener.close()
    connection.close()
    raise AssertionError('kt connected to the URL a record named')


def _archive(members: Callable[[Received], list], suffix: str = '.tar',
             expect_data: bool = False) -> Callable[[Received], list]:
    """An archive of the demo data as ``CUB_200_2011/`` plus hostile members, downloaded
    with --url file://... into P/CUB_200_2011 (P holds a victim file)."""
    def prepare(ctx: Received) -> list:
        parent = ctx.scratch / 'P'
        parent.mkdir()
        (parent / 'victim.txt').write_text('the victim file\n')
        archive = ctx.scratch / f'archive{suffix}'
        entries = [(f'CUB_200_2011/{path.relative_to(ctx.demo_root)}', path.read_bytes())
                   for path in sorted(ctx.demo_root.rglob('*')) if path.is_file()]
        if suffix == '.zip':
            with zipfile.ZipFile(archive, 'w') as zip_file:
                for name, content in entries + members(ctx):
                    zip_file.writestr(name, content)
        else:
            with tarfile.open(archive, 'w') as tar:
                for name, content in entries:
                    info = tarfile.TarInfo(name)
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
                for info in members(ctx):
                    tar.addfile(info, io.BytesIO(b'overwritten\n' * (info.size > 0)))
        md5 = hashlib.md5(archive.read_bytes()).hexdigest()
        return ['data', 'download', 'cub', '--data-root', parent / 'CUB_200_2011', '--url',
                f'file://{archive}', '--md5', md5]
    return prepare


def _tar_file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(b'overwritten\n')
    return info


def _tar_link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _victim_kept(ctx: Received) -> None:
    parent = ctx.scratch / 'P'
    assert (parent / 'victim.txt').read_text() == 'the victim file\n'
    assert sorted(path.name for path in parent.iterdir()) in (
        ['victim.txt'], ['CUB_200_2011', 'victim.txt'])
    assert not (parent / 'tmp').exists() and not (ctx.scratch / 'x').exists()


def _forged_signed_outputs(ctx: Received) -> list:
    """Stage 1's cache as this machine signed it, with its logits made perfect and the
    signature kept."""
    import torch
    from ktcli.scoring.test_outputs import CACHE_MAGIC
    cache = ctx.stage(1) / 'test_outputs.pt'
    content = cache.read_bytes()
    header = content[:len(CACHE_MAGIC) + 65]
    outputs = torch.load(io.BytesIO(content[len(header):]), weights_only=True)
    outputs['logits'] = torch.nn.functional.one_hot(outputs['labels'], 20).float() * 10
    buffer = io.BytesIO()
    torch.save(outputs, buffer)
    cache.write_bytes(header + buffer.getvalue())
    return ['ensemble', ctx.work, '--json', ctx.scratch / 'figures.json']


def _real_figures(ctx: Received) -> None:
    figures = json.loads((ctx.scratch / 'figures.json').read_text())
    assert figures['stages'][0]['top1'] < 100


def _older_format_with_fifo(ctx: Received) -> list:
    """A format-2 manifest (which the old upgrade read) with mmengine's last_checkpoint a
    FIFO: the upgrade would have hung on it while holding the lock; kt reads format 2
    through the checks of format 3 and never opens the FIFO."""
    edit_json(ctx.work / 'kt_manifest.json', lambda data: data.__setitem__('format', 2))
    record = ctx.stage(1) / 'last_checkpoint'
    record.unlink(missing_ok=True)
    os.mkfifo(record)
    return ctx.train_args(2)


def _deep(where: Callable[[Received], Path], command: Callable[[Received], list],
          manifest_gone: bool = False) -> Callable[[Received], list]:
    def prepare(ctx: Received) -> list:
        where(ctx).write_text(DEEP_JSON)
        if manifest_gone:
            (ctx.work / 'kt_manifest.json').unlink()
        return command(ctx)
    return prepare


def _fifo_image(command: str) -> Callable[[Received], list]:
    def prepare(ctx: Received) -> list:
        data = Path(shutil.copytree(ctx.demo_root, ctx.scratch / 'kt_demo'))
        image = sorted((data / 'images').rglob('*.jpg'))[0]
        image.unlink()
        os.mkfifo(image)
        return ctx.on_tampered_data(data, command)
    return prepare


def _ablation(data: dict) -> Callable[[Received], list]:
    def prepare(ctx: Received) -> list:
        (ctx.work / 'ablate_n.json').write_text(json.dumps(data))
        return ['report', ctx.work, '--out', ctx.scratch / 'report.html']
    return prepare


def _failing_onnx(ctx: Received) -> list:
    """The exported ONNX file's metadata around a graph that fails when run (a Reshape of
    the input to 7 x 7 x 7)."""
    import onnx
    from onnx import TensorProto, helper
    model = onnx.load(str(ctx.onnx))
    graph = model.graph
    shape = helper.make_tensor('shape', TensorProto.INT64, [3], [7, 7, 7])
    nodes = [helper.make_node('Reshape', [graph.input[0].name, 'shape'], [output.name])
             for output in graph.output]
    outputs = [helper.make_tensor_value_info(output.name, TensorProto.FLOAT, None)
               for output in graph.output]
    failing = helper.make_model(helper.make_graph(nodes, 'failing', [graph.input[0]], outputs,
                                                  [shape]), opset_imports=model.opset_import)
    failing.metadata_props.extend(model.metadata_props)
    onnx.save(failing, str(ctx.onnx))
    return ['predict', ctx.onnx, ctx.image]


def _torchscript(module: Callable[[], object]) -> Callable[[Received], list]:
    """The exported TorchScript file's kt.json around the scripted ``module()``."""
    def prepare(ctx: Received) -> list:
        import torch
        with zipfile.ZipFile(ctx.torchscript) as archive:
            name = next(n for n in archive.namelist() if n.endswith('/extra/kt.json'))
            metadata = archive.read(name).decode()
        torch.jit.save(torch.jit.script(module()), str(ctx.torchscript),
                       _extra_files={'kt.json': metadata})
        return ['predict', ctx.torchscript, ctx.image]
    return prepare


def _returning_an_int():
    import torch

    class ReturnsAnInt(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> int:
            return x.size(0)
    return ReturnsAnInt()


def _expanding_to_petabytes():
    import torch

    class Expands(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum().expand(1048576, 1048576, 2048).contiguous()
    return Expands()


def _fetching_backbone(ctx: Received) -> list:
    """Stage 1's config.json with a timm backbone that timm would fetch weights for while
    it is built, from the listener's URL."""
    url = _listener(ctx)

    def change(data: dict) -> None:
        data['model']['backbone'] = dict(type='FreezableTIMMBackbone', model_name='resnet18',
                                         pretrained=True, pretrained_cfg_overlay=dict(url=url))
    edit_json(ctx.stage(1) / 'config.json', change)
    return ['predict', ctx.work, ctx.image]


def _lock_folder(ctx: Received) -> list:
    lock = ctx.work / '.kt_manifest.lock'
    lock.unlink(missing_ok=True)
    lock.mkdir()
    (ctx.work / 'kt_manifest.json').unlink()
    # A command that writes takes the lock (kt status only reads: it never opens the lock).
    return ctx.train_args(1)


MEANING_CASES = [
    Case('D1: settings.backbone /proc/self/cwd/W/evil (kt distill)',
         _distill(_backbone_via_proc), 'backbone must be'),
    Case('D1: settings.backbone ../../../W/evil (kt distill)', _distill(_backbone_climbing),
         'backbone must be'),
    Case('D3: tar with a top-level victim.txt beside CUB_200_2011/ (kt data download)',
         _archive(lambda ctx: [_tar_file('victim.txt')]), '', code=0, after=_victim_kept),
    Case('D3: tar with an absolute member', _archive(lambda ctx: [_tar_file(
        str(ctx.scratch / 'P' / 'tmp' / 'x'))]), 'points outside', after=_victim_kept),
    Case('D3: zip with a ../../x member', _archive(lambda ctx: [('../../x', b'overwritten\n')],
                                                   '.zip'), 'points outside',
         after=_victim_kept),
    Case('D3: tar link CUB_200_2011/x -> ../victim.txt',
         _archive(lambda ctx: [_tar_link('CUB_200_2011/x', '../victim.txt')]),
         'not a regular file or folder', after=_victim_kept),
    Case('D4: signed test outputs with perfect logits, signature kept (kt ensemble)',
         _forged_signed_outputs, '', code=0, after=_real_figures),
    Case('D5: settings.pretrained a loopback URL (kt distill)',
         _distill(lambda ctx: dict(pretrained=_listener(ctx))), 'pretrained must be',
         after=_no_connection),
    Case('D5: settings.pretrained /etc/passwd (kt distill)',
         _distill(lambda ctx: dict(pretrained='/etc/passwd')), 'pretrained must be'),
    Case('D5: settings.pretrained a checkpoint outside (kt distill)',
         _distill(lambda ctx: dict(pretrained=str(ctx.outside / 'victim.txt'))),
         'pretrained must be'),
    Case('D6: a format-2 work dir with last_checkpoint a FIFO (kt train)',
         _older_format_with_fifo, '', code=0),
    Case('D9: kt_manifest.json nested 100000 deep (kt status rebuilds it)',
         _deep(lambda ctx: ctx.work / 'kt_manifest.json', lambda ctx: ['status', ctx.work]),
         'nested more than 64 deep', code=0),
    Case('D9: stage.json nested 100000 deep (kt status)',
         _deep(lambda ctx: ctx.stage(2) / 'stage.json', lambda ctx: ['status', ctx.work],
               manifest_gone=True), 'nested more than 64 deep', code=0),
    Case('D9: config.json nested 100000 deep (kt predict)',
         _deep(lambda ctx: ctx.stage(1) / 'config.json',
               lambda ctx: ['predict', ctx.work, ctx.image]), 'nested more than 64 deep'),
    Case('D9: results.json and ablate_n.json nested 100000 deep (kt report)',
         _deep(lambda ctx: ctx.work / 'ablate_n.json', lambda ctx: _deep(
             lambda ctx: ctx.work / 'results.json',
             lambda ctx: ['report', ctx.work, '--out', ctx.scratch / 'report.html'])(ctx)),
         '', code=0),
    Case('D10: a FIFO in place of a dataset image (kt data check)', _fifo_image('check'),
         '1 unreadable image(s)'),
    Case('D10: a FIFO in place of a dataset image (kt train)', _fifo_image('train'),
         '1 unreadable image(s)'),
    Case('D12: ablate_n.json rows a list (kt report)', _ablation(dict(rows=[1])),
         'rows must be'),
    Case('D13: an ONNX file whose graph fails when run (kt predict)', _failing_onnx,
         'failed when run'),
    Case('D13: a TorchScript forward returning an int (kt predict)',
         _torchscript(_returning_an_int), 'failed when run'),
    Case('D13: a TorchScript forward expanding to 8 PB (kt predict)',
         _torchscript(_expanding_to_petabytes),
         'failed when run'),
    Case('D14: .kt_manifest.lock a folder (kt train)', _lock_folder, 'is a folder'),
    Case('config.json: a timm backbone fetching pretrained weights from a URL (kt predict)',
         _fetching_backbone, 'sets pretrained True at model.backbone', after=_no_connection),
]
