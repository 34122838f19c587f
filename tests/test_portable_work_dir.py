"""A work dir travels with its data: stages are identified by the data's content, not its folder.

Each case starts from copies of the session's trained work dir (two tiny stages) and of its
demo data in other folders, and runs kt in this process on them (dry runs and scoring: no
training; ``--n`` + 1 from a copy is tested in tests/test_received_work_dir.py).
"""
import json
import os
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from ktcli.main import app

from .test_received_work_dir import received_copy, train_args

# mmengine's logs: one folder per run, named by its start time.
LOG_FOLDER = re.compile(r'\d{8}_\d{6}')


def kt(*args) -> str:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.output


def kt_error(*args) -> str:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def dry_run(work_dir: Path, data_root: Path) -> str:
    return ' '.join(kt(*train_args(work_dir, data_root, 2), '--dry-run').split())


def planned(output: str) -> list:
    """The (digest, verdict) of each stage a dry run lists."""
    return re.findall(r'stage \d/2 ([0-9a-f]{16}): (reused|to train)', output)


def chain(work_dir: Path) -> list:
    return json.loads((work_dir / 'kt_manifest.json').read_text())['chain']


def copy_of(trained_work_dir: Path, demo_root: Path, folder: Path) -> tuple:
    """The work dir (without its cached test outputs) and the data, each copied into
    ``folder``, under other names."""
    work_dir = received_copy(trained_work_dir, folder / 'runs' / 'copied_work')
    data_root = folder / 'datasets' / 'birds'
    shutil.copytree(demo_root, data_root)
    return work_dir, data_root


def replace_image(data_root: Path, split: str) -> None:
    """Overwrite the first image of ``split`` with the last of the other split (both valid)."""
    def table(name: str) -> dict:
        return dict(line.split() for line in (data_root / name).read_text().splitlines())

    names, is_train = table('images.txt'), table('train_test_split.txt')
    wanted = '1' if split == 'train' else '0'
    target = next(names[k] for k in names if is_train[k] == wanted)
    source = [names[k] for k in names if is_train[k] != wanted][-1]
    (data_root / 'images' / target).write_bytes((data_root / 'images' / source).read_bytes())


def test_the_same_data_in_other_folders_reuses_every_stage_and_scores_there(
        tmp_path, trained_work_dir, demo_root):
    work_dir, data_root = copy_of(trained_work_dir, demo_root, tmp_path)
    output = dry_run(work_dir, data_root)
    assert '2 distinct stages: 2 reused, 0 to train' in output
    assert planned(output) == [(digest, 'reused') for digest in chain(trained_work_dir)]
    reference = tmp_path / 'reference.json'
    kt('ensemble', trained_work_dir, '--json', reference)
    # Without --data-root, kt finds a folder where it has seen that data (the dry run's).
    kt('ensemble', work_dir, '--json', tmp_path / 'found.json')
    for cache in work_dir.glob('stages/*/test_outputs.pt'):
        cache.unlink()
    kt('ensemble', work_dir, '--data-root', data_root, '--json', tmp_path / 'given.json')
    figures = [json.loads((tmp_path / f'{name}.json').read_text())
               for name in ('reference', 'found', 'given')]
    assert figures[0] == figures[1] == figures[2]


def test_a_replaced_training_image_plans_new_stages_and_other_data_is_one_line(
        tmp_path, trained_work_dir, demo_root):
    work_dir, data_root = copy_of(trained_work_dir, demo_root, tmp_path)
    replace_image(data_root, 'test')
    # The weights do not depend on the test split: the stages are reused, and re-scored.
    assert '2 reused, 0 to train' in dry_run(work_dir, data_root)
    replace_image(data_root, 'train')
    output = dry_run(work_dir, data_root)
    assert '2 distinct stages: 0 reused, 2 to train' in output
    new = [digest for digest, verdict in planned(output) if verdict == 'to train']
    assert len(new) == 2 and not set(new) & set(chain(trained_work_dir))
    line = kt_error('ensemble', work_dir, '--data-root', data_root)
    assert line.startswith(f'error: --data-root {data_root} holds other data than the data '
                           'the stages were trained on (kt demo (synthetic), 100 images, '
                           'fingerprint ')
    assert line.endswith('pass --data-root with the folder that holds it, or train on this '
                         'data with `kt train`')
    assert len(set(re.findall(r'fingerprint ([0-9a-f]{16})', line))) == 2


def files_naming(work_dir: Path, text: str) -> list:
    """The files of a work dir, mmengine's log folders aside, whose bytes hold ``text``."""
    found = []
    for folder, subfolders, files in os.walk(work_dir):
        subfolders[:] = [name for name in subfolders if not LOG_FOLDER.fullmatch(name)]
        found += [Path(folder) / name for name in files
                  if text.encode() in (Path(folder) / name).read_bytes()]
    return found


def test_a_copied_work_dir_names_no_folder_of_the_training_machine(
        tmp_path_factory, tmp_path, trained_work_dir, demo_root):
    copied = tmp_path / 'copied'
    shutil.copytree(trained_work_dir, copied, symlinks=True)
    # Configs, records, manifest, results, checkpoints, cached test outputs: every file.
    assert {path.name for path in copied.rglob('*') if path.is_file()
            and not LOG_FOLDER.fullmatch(path.parent.name)} >= {
        'config.json', 'config.py', 'stage.json', 'kt_manifest.json', 'results.json',
        'epoch_1.pth', 'last_checkpoint', 'test_outputs.pt'}
    for folder in (trained_work_dir, demo_root, tmp_path_factory.getbasetemp()):
        assert files_naming(copied, str(folder)) == []
    # mmengine's logs do name them: the search finds what is there.
    assert any(str(demo_root) in log.read_text() for log in copied.glob('stages/*/*/*.log'))


def test_a_work_dir_of_an_older_format_is_refused_in_one_line(tmp_path, trained_work_dir):
    """Format 1 named folders an upgrade had to follow; kt no longer upgrades it."""
    work_dir = tmp_path / 'old'
    shutil.copytree(trained_work_dir, work_dir, symlinks=True)
    manifest = json.loads((work_dir / 'kt_manifest.json').read_text())
    (work_dir / 'kt_manifest.json').write_text(json.dumps(dict(manifest, format=1)))
    line = kt_error('status', work_dir)
    assert 'was written by an older kt (format 1); this kt reads formats 2 to 3: train ' \
        'again in a new work dir' in line


def test_a_work_dir_of_the_previous_format_is_read_through_the_same_checks(
        tmp_path, trained_work_dir):
    """What the previous kt trained (format 2: the same fields and digests) stays usable."""
    work_dir = tmp_path / 'previous'
    shutil.copytree(trained_work_dir, work_dir, symlinks=True)
    manifest = json.loads((work_dir / 'kt_manifest.json').read_text())
    (work_dir / 'kt_manifest.json').write_text(json.dumps(dict(manifest, format=2)))
    result = CliRunner().invoke(app, ['status', str(work_dir)])
    assert result.exit_code == 0 and '2 done' in result.output, result.output
    assert json.loads((work_dir / 'kt_manifest.json').read_text())['format'] in (2, 3)
