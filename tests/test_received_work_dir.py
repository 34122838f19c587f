"""A work dir received from someone else: nothing in it runs, and it works where it lands.

Each case starts from a ``cp -r`` copy of the session's trained work dir (two tiny stages),
tampered with as an attacker would, and runs kt in a real process.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import REPO
from .kt_processes import forked_kt as kt
from .test_train_command import stage_logs, teachers_of


class CodeRunningPayload:
    """Unpickling this object runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


# kt(ARGS) runs each command in a process of its own, forked from the session's server (a
# real process, without importing torch and mmengine again for each command).
pytestmark = pytest.mark.usefixtures('kt_server')


def train_args(work_dir: Path, demo_root: Path, n: int) -> list:
    """The settings of the session's trained work dir (conftest.trained_work_dir)."""
    return ['train', '--dataset', 'demo', '--data-root', demo_root, '--backbone',
            'resnet18_tiny', '--img-size', '32', '--epochs', '1', '--batch-size', '8',
            '--work-dir', work_dir, '--n', str(n)]


def received_copy(trained_work_dir: Path, destination: Path) -> Path:
    """``cp -r`` of the trained work dir, without the cached test outputs."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(['cp', '-r', str(trained_work_dir), str(destination)], check=True)
    for cache in destination.glob('stages/*/test_outputs.pt'):
        cache.unlink()
    return destination


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert 'Traceback' not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope='module')
def poisoned(tmp_path_factory, trained_work_dir):
    """A received work dir whose stage 1 checkpoint also carries a code-running pickle."""
    base = tmp_path_factory.mktemp('received')
    work_dir = received_copy(trained_work_dir, base / 'work')
    marker = base / 'payload_ran'
    checkpoint = next((work_dir / 'stage_1').glob('epoch_*.pth'))
    state = torch.load(checkpoint, weights_only=True)
    state['extra'] = CodeRunningPayload(marker)
    torch.save(state, checkpoint)
    return work_dir, marker


# Every command loads checkpoints through registry_plugins.checkpoint_loading: one per way
# in (training and resuming, the ensemble module of export, the eager model of predict).
# --pretrained: the same file as the start of a new work dir's stage 1.
@pytest.mark.parametrize('command', ['export', 'predict', 'train', 'pretrained'])
def test_a_code_running_checkpoint_is_refused_by_every_command(poisoned, demo_root, command):
    work_dir, marker = poisoned
    image = next((demo_root / 'images').rglob('*.jpg'))
    checkpoint = next((work_dir / 'stage_1').glob('epoch_*.pth'))
    args = dict(export=['export', work_dir, '--format', 'onnx', '--out',
                        work_dir.parent / 'ensemble.onnx'],
                predict=['predict', work_dir, image],
                train=train_args(work_dir, demo_root, 3),
                pretrained=train_args(work_dir.parent / 'fresh', demo_root, 1)
                + ['--pretrained', checkpoint])[command]
    line = one_error_line(kt(*args))
    assert 'holds Python objects besides weights (posix.system)' in line
    assert 'epoch_1.pth' in line
    assert not marker.exists()


def test_code_in_a_stage_config_never_runs(tmp_path, trained_work_dir):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    marker = tmp_path / 'config_ran'
    for config in work_dir.glob('stages/*/config.py'):
        config.write_text(f'import os; os.system("touch {marker}")\n' + config.read_text())
    result = kt('ensemble', work_dir)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_a_config_naming_an_unregistered_type_is_refused(tmp_path, trained_work_dir):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    config = (work_dir / 'stage_1').resolve() / 'config.json'
    data = json.loads(config.read_text())
    # mmengine would import and call any dotted name it finds as a type.
    data['model']['backbone'] = dict(type='os.system', command=f'touch {tmp_path / "ran"}')
    config.write_text(json.dumps(data))
    line = one_error_line(kt('ensemble', work_dir))
    assert "names 'os.system' as a type at model.backbone, which no registry holds" in line
    assert not (tmp_path / 'ran').exists()


def test_a_moved_work_dir_is_reused_and_trains_exactly_one_more_stage_from_its_own_stages(
        tmp_path, trained_work_dir, demo_root):
    """The suite's check of extending a work dir (``--n`` + 1), too: one stage 3 trained
    serves both."""
    copied = received_copy(trained_work_dir, tmp_path / 'copied')
    moved = tmp_path / 'elsewhere' / 'moved'
    moved.parent.mkdir()
    shutil.move(str(copied), str(moved))
    # Its data travels too, to another folder: the stages know it by its content.
    data_root = tmp_path / 'data elsewhere' / 'birds'
    shutil.copytree(demo_root, data_root)

    result = kt(*train_args(moved, data_root, 2))
    assert result.returncode == 0, result.stderr[-2000:]
    assert '2 reused, 0 to train' in result.stdout
    chain = json.loads((moved / 'kt_manifest.json').read_text())['chain']
    logs_before = {digest: stage_logs(moved / 'stages' / digest) for digest in chain}

    result = kt(*train_args(moved, data_root, 3))
    assert result.returncode == 0, result.stderr[-2000:]
    assert '2 reused, 1 to train' in result.stdout
    assert json.loads((moved / 'kt_manifest.json').read_text())['chain'][:2] == chain
    for digest, logs in logs_before.items():
        assert stage_logs(moved / 'stages' / digest) == logs  # not retrained
    assert teachers_of(moved / 'stage_3') == [f'../{digest}/epoch_1.pth' for digest in chain]
    results = json.loads((moved / 'results.json').read_text())['stages']
    assert len(results) == 3 and [r['reused'] for r in results] == [True, True, False]
    log = next((moved / 'stage_3').glob('*/*.log')).read_text()
    teachers = [line for line in log.splitlines() if 'Teacher ' in line]
    assert len(teachers) == 2
    assert all(str(moved / 'stages') in line for line in teachers)
    assert str(trained_work_dir) not in log and str(data_root) in log


def test_a_broken_manifest_is_rebuilt_from_the_stage_directories(tmp_path, trained_work_dir):
    assert kt('ensemble', trained_work_dir, '--json', tmp_path / 'reference.json').returncode == 0
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    manifest = work_dir / 'kt_manifest.json'
    truncated = manifest.read_text()[:50]
    manifest.write_text(truncated)
    result = kt('ensemble', work_dir, '--json', tmp_path / 'rebuilt.json')
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f'{manifest} is not readable JSON (')
    assert result.stderr.strip().endswith(
        'it is truncated or not written by kt; rebuilt it from 2 stage directories')
    assert len(result.stderr.strip().splitlines()) == 1
    figures = [json.loads((tmp_path / f'{name}.json').read_text())
               for name in ('reference', 'rebuilt')]
    assert figures[0] == figures[1]
    # kt ensemble only reads: it rebuilt the manifest in memory and left the file alone (a
    # command that trains rewrites it: tests/test_manifest.py).
    assert manifest.read_text() == truncated


def test_models_default_to_the_finished_stages(tmp_path, trained_work_dir):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    manifest = json.loads((work_dir / 'kt_manifest.json').read_text())
    unfinished = manifest['chain'][1]
    # An interrupted stage 2: no final checkpoint yet.
    for checkpoint in (work_dir / 'stages' / unfinished).glob('epoch_*.pth'):
        checkpoint.unlink()
    result = kt('ensemble', work_dir, '--json', tmp_path / 'figures.json')
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / 'figures.json').read_text())
    assert [row['index'] for row in figures['stages']] == [1]


def test_an_unwritable_work_dir_is_one_line(demo_root):
    line = one_error_line(kt(*train_args(Path('/sys/kt_work'), demo_root, 1)))
    assert line.startswith('error: cannot write /sys/kt_work')
    assert 'pass a --work-dir you can write to' in line


def received_copy_digest(work_dir: Path, n: int) -> str:
    """The digest stage ``n`` of a copy's sequence will have."""
    from .received_copies import Received
    return Received(work_dir, Path(), Path(), {}, Path(), Path()).planned_digest(n)


def set_status(work_dir: Path, digest: str, status: str) -> None:
    """Record a status in the manifest and the stage's own stage.json, as kt does."""
    for path, record_of in ((work_dir / 'kt_manifest.json', lambda data: data['stages'][digest]),
                            (work_dir / 'stages' / digest / 'stage.json', lambda data: data)):
        data = json.loads(path.read_text())
        record_of(data)['status'] = status
        path.write_text(json.dumps(data))


def test_resume_never_runs_the_config_a_checkpoint_carries(tmp_path, trained_work_dir,
                                                          demo_root):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    marker = tmp_path / 'resume_ran'
    digest = json.loads((work_dir / 'kt_manifest.json').read_text())['chain'][1]
    checkpoint = work_dir / 'stages' / digest / 'epoch_1.pth'
    state = torch.load(checkpoint, weights_only=True)
    # kt's own checkpoints carry no config text (mmengine would execute it on resume).
    assert 'cfg' not in state['meta'] and 'cfg' not in state['message_hub']['runtime_info']
    state['meta']['config'] = f"x = __import__('os').system('touch {marker}')\ngpu_ids = None\n"
    torch.save(state, checkpoint)
    set_status(work_dir, digest, 'interrupted')
    result = kt(*train_args(work_dir, demo_root, 2))
    assert result.returncode == 0, result.stderr[-2000:]
    assert not marker.exists()


def test_a_checkpoint_planted_for_the_next_stage_is_neither_resumed_nor_adopted(
        tmp_path, trained_work_dir, demo_root):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    stages = work_dir / 'stages'
    planted = stages / received_copy_digest(work_dir, 3) / 'epoch_1.pth'
    planted.parent.mkdir()
    shutil.copy(next(stages.glob('*/epoch_1.pth')), planted)
    line = one_error_line(kt(*train_args(work_dir, demo_root, 3)))
    assert line == (f'error: {planted.parent} holds epoch_1.pth, but no kt run of this stage is '
                    'recorded, so kt neither resumes nor adopts them: move them out of the '
                    'folder (nothing is deleted) and rerun')
    assert planted.is_file()
    assert planted.parent.name not in json.loads((work_dir / 'kt_manifest.json').read_text())[
        'stages'] or not (planted.parent / 'last_checkpoint').exists()


def test_a_checkpoint_link_planted_for_the_next_stage_is_not_written_through(
        tmp_path, trained_work_dir, demo_root):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    victim = tmp_path / 'victim.bin'
    victim.write_bytes(b'victim')
    link = work_dir / 'stages' / received_copy_digest(work_dir, 3) / 'epoch_1.pth'
    link.parent.mkdir()
    link.symlink_to(victim)
    line = one_error_line(kt(*train_args(work_dir, demo_root, 3)))
    assert line == (f'error: {link} is a symbolic link; kt never writes through links in a '
                    'work dir: remove it and rerun')
    assert victim.read_bytes() == b'victim'


def test_distill_never_applies_the_options_of_a_received_manifest(tmp_path, trained_work_dir):
    """The members' cfg_options were their trainer's command line: kt distill builds its
    student from their checked settings and its own options only, so a _base_ or the folders
    (D2: checkpoint and log out_dir, save_dir) a record names are never applied."""
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    marker, elsewhere = tmp_path / 'base_ran', tmp_path / 'elsewhere'
    for evil in (work_dir / 'evil.py', tmp_path / 'evil.py'):
        evil.write_text(f'import os\nos.system("touch {marker}")\nx = 1\n')
    manifest = json.loads((work_dir / 'kt_manifest.json').read_text())
    for digest, record in manifest['stages'].items():
        record['settings']['cfg_options'] = [
            ['_base_', '../../evil.py'], ['default_hooks.checkpoint.out_dir', str(elsewhere)],
            ['default_hooks.logger.out_dir', str(elsewhere)],
            ['visualizer.vis_backends', [dict(type='LocalVisBackend', save_dir=str(elsewhere))]]]
        (work_dir / 'stages' / digest / 'stage.json').write_text(json.dumps(record))
    (work_dir / 'kt_manifest.json').write_text(json.dumps(manifest))
    result = kt('distill', work_dir)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    assert not marker.exists() and not elsewhere.exists()
    configs = [path.read_text() for path in work_dir.glob('stages/*/config.json')]
    assert len(configs) == 3 and not any('evil' in config or str(elsewhere) in config
                                         for config in configs)


def scripted_ensemble(exported: Path, path: Path, forward: str) -> Path:
    """A scripted module whose forward runs ``forward`` (TorchScript source, ``x`` the
    input), saved to ``path`` with the genuine kt.json of ``exported``."""
    import textwrap
    import zipfile
    with zipfile.ZipFile(exported) as archive:
        metadata = archive.read(next(name for name in archive.namelist()
                                     if name.endswith('/extra/kt.json')))
    source = path.with_suffix('.py')
    source.write_text(textwrap.dedent('''
        import sys
        import torch
        from typing import Tuple

        class Model(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor,
                                                         torch.Tensor, torch.Tensor]:
        {body}
                probabilities = torch.softmax(torch.zeros(x.shape[0], 20), 1)
                return (probabilities, torch.zeros(x.shape[0], 4, 4),
                        torch.zeros(x.shape[0], 4, 4), torch.zeros(x.shape[0], 2, 2))

        torch.jit.save(torch.jit.script(Model()), sys.argv[1],
                       _extra_files={{'kt.json': open(sys.argv[2]).read()}})
        ''').format(body=textwrap.indent(textwrap.dedent(forward), ' ' * 8)))
    (tmp := path.with_suffix('.json')).write_bytes(metadata)
    subprocess.run([sys.executable, str(source), str(path), str(tmp)], check=True,
                   capture_output=True)
    return path


def test_a_torchscript_model_that_reaches_files_is_refused(tmp_path, exported, demo_root):
    victim, secret = tmp_path / 'victim.bin', tmp_path / 'secret.txt'
    victim.write_bytes(b'ABCDEFGHIJ')
    secret.write_text('secret')
    evil = scripted_ensemble(exported['torchscript'], tmp_path / 'evil.pt', f'''
        secret = torch.from_file({str(secret)!r}, False, 4, dtype=torch.uint8)
        torch.from_file({str(victim)!r}, True, 8, dtype=torch.uint8).fill_(88)
        x = x + secret.float().sum() * 0
        ''')
    image = next((demo_root / 'images').rglob('*.jpg'))
    line = one_error_line(kt('predict', evil, image))
    assert line.startswith(f'error: {evil} calls aten::from_file in the model.forward, which maps '
                           'a file into a tensor')
    assert line.endswith('or exchange ONNX')
    assert victim.read_bytes() == b'ABCDEFGHIJ'


def test_a_torchscript_model_with_code_run_on_load_is_refused(tmp_path, exported, demo_root):
    victim = tmp_path / 'victim.bin'
    victim.write_bytes(b'ABCDEFGHIJ')
    evil = tmp_path / 'evil_setstate.pt'
    source = tmp_path / 'setstate.py'
    source.write_text(f'''
import sys, torch, zipfile
archive = zipfile.ZipFile({str(exported['torchscript'])!r})
metadata = archive.read(next(n for n in archive.namelist() if n.endswith('/extra/kt.json')))

class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.zeros(1)

    def forward(self, x: torch.Tensor):
        return torch.softmax(torch.zeros(x.shape[0], 20), 1)

    @torch.jit.export
    def __getstate__(self):
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]):
        torch.from_file({str(victim)!r}, True, 8, dtype=torch.uint8).fill_(77)
        self.w = state[0]
        self.training = state[1]

torch.jit.save(torch.jit.script(Model()), sys.argv[1], _extra_files={{'kt.json': metadata}})
''')
    subprocess.run([sys.executable, str(source), str(evil)], check=True, capture_output=True)
    line = one_error_line(kt('predict', evil, next((demo_root / 'images').rglob('*.jpg'))))
    assert 'defines __setstate__' in line and 'code that torch.jit.load runs' in line
    assert victim.read_bytes() == b'ABCDEFGHIJ'


def test_an_export_link_planted_in_the_work_dir_is_replaced_not_followed(tmp_path,
                                                                        trained_work_dir):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    victim = tmp_path / 'victim.txt'
    victim.write_text('victim')
    link = work_dir / 'exports' / 'ensemble_1-2.pt'
    link.parent.mkdir()
    link.symlink_to(victim)
    result = kt('export', work_dir, '--format', 'torchscript')
    assert result.returncode == 0, result.stderr[-2000:]
    assert victim.read_text() == 'victim'
    assert not link.is_symlink() and link.stat().st_size > 1000
    assert sorted(path.name for path in link.parent.iterdir()) == ['ensemble_1-2.pt']


def test_kill_9_during_the_export_check_leaves_the_file_at_out_as_it_was(tmp_path,
                                                                        trained_work_dir,
                                                                        exported):
    import signal
    import time
    out = tmp_path / 'out' / 'model.pt'
    out.parent.mkdir()
    shutil.copy(exported['torchscript'], out)
    before = out.read_bytes()
    process = subprocess.Popen(
        [sys.executable, '-m', 'ktcli', 'export', str(trained_work_dir), '--format',
         'torchscript', '--out', str(out)], cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    # The check runs in a fresh process (export_verifier): kill everything once it runs.
    while time.monotonic() < deadline and process.poll() is None:
        if any(b'export_verifier' in path.read_bytes() for path in Path('/proc').glob('*/cmdline')
               if path.parent.name.isdigit() and _is_child_of(path.parent.name, process.pid)):
            break
        time.sleep(0.05)
    assert process.poll() is None, 'the export ended before its check could be killed'
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert out.read_bytes() == before
    assert sorted(path.name for path in out.parent.iterdir()) == ['model.pt']


def _is_child_of(pid: str, parent: int) -> bool:
    try:
        status = Path(f'/proc/{pid}/status').read_text()
    except OSError:
        return False
    return f'PPid:\t{parent}\n' in status


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs holding one small file (the export that must survive)."""
    folder = tmp_path / 'full'
    folder.mkdir()
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f'mounting a tmpfs needs root: {mounted.stderr.decode().strip()}')
    try:
        yield folder
    finally:
        subprocess.run(['umount', str(folder)], check=True)


# Both formats are written by the same atomic writer: one is enough here.
@pytest.mark.parametrize('model_format, suffix', [('onnx', '.onnx')])
def test_a_full_disk_export_is_one_line_and_leaves_the_old_file(full_disk, trained_work_dir,
                                                                model_format, suffix):
    out = full_disk / f'ensemble{suffix}'
    out.write_bytes(b'the export that was there')
    line = one_error_line(kt('export', trained_work_dir, '--format', model_format, '--out', out))
    assert line == (f'error: cannot write {out}: the disk is full: free some space; nothing '
                    'finished was lost')
    assert out.read_bytes() == b'the export that was there'
    assert sorted(path.name for path in full_disk.iterdir()) == [out.name]


def test_two_kt_starting_one_stage_at_the_same_moment_claim_it_once(tmp_path, trained_work_dir):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    digest = json.loads((work_dir / 'kt_manifest.json').read_text())['chain'][1]
    set_status(work_dir, digest, 'interrupted')
    start = tmp_path / 'start'
    claim = f'''
import socket, sys, time
from pathlib import Path
from ktcli.errors import UserError
from ktcli.sequencing.stage_training import claim_stage
from ktcli.stages.manifest import Manifest
from ktcli.stages.planned_stage import PlannedStage
manifest = Manifest(Path({str(work_dir)!r}))
stage = PlannedStage(2, {digest!r}, None, Path({str(work_dir / 'stages' / digest)!r}),
                     None, None, [], 'two')
Path(sys.argv[1]).touch()
while not Path({str(start)!r}).exists():
    time.sleep(0.001)
try:
    claim_stage(manifest, stage, host=socket.gethostname(), pid=None)
except UserError as error:
    print('refused:', error)
    sys.exit(2)
print('claimed')
time.sleep(3)  # the claimer is alive while the other one checks
'''
    ready = [tmp_path / f'ready_{k}' for k in range(2)]
    claimers = [subprocess.Popen([sys.executable, '-c', claim, str(path)], cwd=REPO, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for path in ready]
    import time
    while not all(path.exists() for path in ready):  # both have imported kt: start them
        assert all(claimer.poll() is None for claimer in claimers)
        time.sleep(0.05)
    start.touch()
    results = [(claimer.wait(timeout=120), claimer.stdout.read()) for claimer in claimers]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(output for code, output in results if code == 2)
    assert 'is being trained by kt process' in refused
