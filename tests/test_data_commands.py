"""Tests of ``kt data demo | download | check`` (ktcli.commands.data and its modules)."""
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from ktcli.commands.data import data_app
from ktcli.data.check import check_layout
from ktcli.data.demo import make_demo_dataset
from ktcli.errors import UserError

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = 'CUB_200_2011.tgz'
TINY = dict(img_size=32, train_per_class=2, test_per_class=1)

app = typer.Typer()
app.add_typer(data_app, name='data')


def kt(*args: str) -> Result:
    """Run ``kt <args>`` in-process."""
    return CliRunner().invoke(app, list(args))


def error_line(result: Result) -> str:
    """The single line a failed command printed on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


@pytest.fixture(scope='module')
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-class demo dataset with 2 train and 1 test image per class."""
    return make_demo_dataset(tmp_path_factory.mktemp('demo') / 'kt_demo', **TINY)


@pytest.fixture
def demo_copy(tiny_demo: Path, tmp_path: Path) -> Path:
    """A copy of the tiny demo dataset that a test may break."""
    return Path(shutil.copytree(tiny_demo, tmp_path / 'kt_demo'))


def test_demo_writes_a_dataset_that_passes_the_layout_check(tmp_path: Path) -> None:
    out = tmp_path / 'kt_demo'

    result = kt('data', 'demo', '--data-root', str(out), '--img-size', '32',
                '--train-per-class', '1', '--test-per-class', '1')

    assert result.exit_code == 0, result.output
    assert f'{out}: 40 images of 20 species' in result.stdout
    assert len(list((out / 'images').rglob('*.jpg'))) == 40
    check_layout('demo', out)


def test_check_reports_the_splits_of_a_good_demo_dataset(tiny_demo: Path) -> None:
    result = kt('data', 'check', 'demo', '--data-root', str(tiny_demo))

    assert result.exit_code == 0, result.output
    assert re.search(r'train\W+40\W+20/20\W+0\b', result.stdout), result.stdout
    assert re.search(r'test\W+20\W+20/20\W+0\b', result.stdout), result.stdout
    assert '20 classes' in result.stdout


def test_check_of_a_missing_root_names_it_and_the_demo_command(tmp_path: Path) -> None:
    root = tmp_path / 'nowhere'

    result = kt('data', 'check', 'demo', '--data-root', str(root))

    assert result.exit_code == 2
    line = error_line(result)
    assert f'{root} is missing' in line
    assert f'`kt data demo --data-root {root}`' in line


def test_check_of_a_missing_split_file_names_the_file(demo_copy: Path) -> None:
    (demo_copy / 'train_test_split.txt').unlink()

    result = kt('data', 'check', 'demo', '--data-root', str(demo_copy))

    assert result.exit_code == 2
    assert f'{demo_copy / "train_test_split.txt"} is missing' in error_line(result)


def test_check_of_ids_that_differ_between_cub_files_names_the_file(demo_copy: Path) -> None:
    labels = demo_copy / 'image_class_labels.txt'
    lines = labels.read_text().splitlines()
    labels.write_text(''.join(f'{line}\n' for line in lines[:-1]))

    result = kt('data', 'check', 'demo', '--data-root', str(demo_copy))

    assert result.exit_code == 2
    line = error_line(result)
    assert f'{labels} and {demo_copy / "images.txt"} list different image ids' in line
    assert f'only in images.txt (first: {len(lines)})' in line


def test_check_of_a_truncated_jpeg_names_the_image(demo_copy: Path) -> None:
    image = sorted((demo_copy / 'images').rglob('*.jpg'))[0]
    data = image.read_bytes()
    image.write_bytes(data[:len(data) // 2])

    result = kt('data', 'check', 'demo', '--data-root', str(demo_copy))

    assert result.exit_code == 2
    line = error_line(result)
    assert line.startswith('error: 1 unreadable image(s)')
    assert str(image) in line
    assert re.search(r'train\W+40\W+20/20\W+1\b', result.stdout), result.stdout


def test_check_of_custom_splits_with_different_class_folders_names_them(
        tiny_demo: Path, tmp_path: Path) -> None:
    first, second = sorted((tiny_demo / 'images').iterdir())[:2]
    for split, folders in (('train', (first, second)), ('test', (first,))):
        for folder in folders:
            shutil.copytree(folder, tmp_path / split / folder.name)
    shutil.copytree(second, tmp_path / 'test' / 'renamed')

    result = kt('data', 'check', 'custom', '--data-root', str(tmp_path))

    assert result.exit_code == 2
    line = error_line(result)
    assert f'class folders of {tmp_path / "test"} and {tmp_path / "train"} differ' in line
    assert "1 only in test/ (first: 'renamed')" in line
    assert f"1 only in train/ (first: {second.name!r})" in line


def test_check_layout_of_a_missing_root_names_the_download_command(tmp_path: Path) -> None:
    root = tmp_path / 'data' / 'CUB_200_2011'

    with pytest.raises(UserError) as error:
        check_layout('cub', root)

    message = str(error.value)
    assert '\n' not in message
    assert f'{root} is missing' in message
    assert 'images.txt, image_class_labels.txt' in message
    assert f'`kt data download cub --data-root {root}`' in message
    assert 'or pass --data-root with the folder of a copy you already have' in message


def test_check_layout_accepts_a_good_root_without_importing_torch(tiny_demo: Path) -> None:
    code = ('import sys; from ktcli.data.check import check_layout; '
            f'print(check_layout("demo", {str(tiny_demo)!r})); '
            'assert "torch" not in sys.modules and "mmpretrain" not in sys.modules')

    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tiny_demo.resolve())


class ArchiveServer:
    """What the test HTTP server serves, and the requests it saw."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.honour_range = True
        self.requests: list[tuple[str, str | None]] = []
        self.statuses: list[int] = []
        self.url = ''


class ArchiveHandler(BaseHTTPRequestHandler):
    """Serves ArchiveServer.files, answering ``Range: bytes=N-`` with 206."""

    def do_GET(self) -> None:
        state: ArchiveServer = self.server.state
        range_header = self.headers.get('Range')
        state.requests.append((self.path, range_header))
        body = state.files.get(self.path)
        if body is None:
            state.statuses.append(404)
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r'bytes=(\d+)-', range_header or '')
        if match and state.honour_range:
            start = int(match[1])
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        else:
            self.send_response(200)
        state.statuses.append(206 if start else 200)
        self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture(scope='module')
def cub_archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A .tgz holding a tiny demo dataset under CUB_200_2011/."""
    folder = tmp_path_factory.mktemp('archive')
    dataset = make_demo_dataset(folder / 'dataset', img_size=32, train_per_class=1,
                                test_per_class=1)
    with tarfile.open(folder / ARCHIVE, 'w:gz') as tar:
        tar.add(dataset, arcname='CUB_200_2011')
    return (folder / ARCHIVE).read_bytes()


@pytest.fixture
def server(cub_archive: bytes) -> Iterator[ArchiveServer]:
    """A local HTTP server serving the archive at /CUB_200_2011.tgz."""
    state = ArchiveServer({f'/{ARCHIVE}': cub_archive})
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), ArchiveHandler)
    httpd.state = state
    state.url = f'http://127.0.0.1:{httpd.server_port}/{ARCHIVE}'
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def md5_of(data: bytes) -> str:
    """The hex MD5 of some bytes."""
    return hashlib.md5(data).hexdigest()


def download_cub(root: Path, url: str, md5: str) -> Result:
    """Run ``kt data download cub`` from a mirror."""
    return kt('data', 'download', 'cub', '--root', str(root), '--url', url, '--md5', md5)


def test_download_unpacks_a_dataset_that_passes_the_layout_check(
        server: ArchiveServer, cub_archive: bytes, tmp_path: Path) -> None:
    result = download_cub(tmp_path, server.url, md5_of(cub_archive))

    assert result.exit_code == 0, result.output
    assert server.requests == [(f'/{ARCHIVE}', None)]
    assert check_layout('cub', tmp_path / 'CUB_200_2011') == (tmp_path / 'CUB_200_2011').resolve()
    assert (tmp_path / ARCHIVE).read_bytes() == cub_archive
    assert not (tmp_path / f'{ARCHIVE}.part').exists()

    again = download_cub(tmp_path, server.url, md5_of(cub_archive))

    assert again.exit_code == 0, again.output
    assert 'already' in again.stdout
    assert len(server.requests) == 1


def test_download_into_a_data_root_of_another_name_and_from_a_file_url_in_place(
        cub_archive: bytes, tmp_path: Path) -> None:
    archive = tmp_path / 'mirror' / ARCHIVE
    archive.parent.mkdir()
    archive.write_bytes(cub_archive)
    data_root = tmp_path / 'datasets' / 'birds'

    result = kt('data', 'download', 'cub', '--data-root', str(data_root), '--url',
                archive.as_uri(), '--md5', md5_of(cub_archive))

    assert result.exit_code == 0, result.output
    assert check_layout('cub', data_root) == data_root.resolve()
    # The local archive was read where it lies: nothing copied, nothing left to unpack.
    assert sorted(path.name for path in (tmp_path / 'datasets').iterdir()) == ['birds']
    assert 'archive kept at' in result.stdout and str(archive) in ' '.join(result.stdout.split())


def test_the_older_root_spelling_means_the_folder_above(tiny_demo: Path, tmp_path: Path) -> None:
    result = kt('data', 'download', 'cub', '--root', str(tmp_path), '--data-root',
                str(tmp_path / 'x'))
    assert result.exit_code == 2
    assert error_line(result) == 'error: pass --data-root alone; --root is its older spelling'


def test_a_dataset_missing_classes_warns(tiny_demo: Path, tmp_path: Path) -> None:
    subset = Path(shutil.copytree(tiny_demo, tmp_path / 'subset'))
    keep = {line.split()[0] for line in (subset / 'image_class_labels.txt').read_text()
            .splitlines() if int(line.split()[1]) <= 5}
    for name in ('images.txt', 'image_class_labels.txt', 'train_test_split.txt'):
        lines = (subset / name).read_text().splitlines()
        (subset / name).write_text(''.join(f'{line}\n' for line in lines
                                           if line.split()[0] in keep))

    result = kt('data', 'check', 'demo', '--data-root', str(subset))

    assert result.exit_code == 0, result.output
    warnings = [' '.join(line.split()) for line in result.stdout.split('warning: ')[1:]]
    assert len(warnings) == 2
    assert warnings[0].startswith('the train split holds images of 5 of the 20 classes of kt '
                                  'demo (synthetic); the model still predicts all 20')


def test_download_with_a_wrong_md5_fails_and_leaves_no_archive(
        server: ArchiveServer, cub_archive: bytes, tmp_path: Path) -> None:
    wrong = '0' * 32

    result = download_cub(tmp_path, server.url, wrong)

    assert result.exit_code == 2
    line = error_line(result)
    assert 'checksum' in line and 'did not match' in line
    assert f'expected MD5 {wrong}, got {md5_of(cub_archive)}' in line
    assert '--md5' in line
    assert list(tmp_path.iterdir()) == []


def test_download_resumes_a_partial_file_with_a_range_request(
        server: ArchiveServer, cub_archive: bytes, tmp_path: Path) -> None:
    half = len(cub_archive) // 2
    (tmp_path / f'{ARCHIVE}.part').write_bytes(cub_archive[:half])

    result = download_cub(tmp_path, server.url, md5_of(cub_archive))

    assert result.exit_code == 0, result.output
    assert server.requests == [(f'/{ARCHIVE}', f'bytes={half}-')]
    assert server.statuses == [206]
    assert md5_of((tmp_path / ARCHIVE).read_bytes()) == md5_of(cub_archive)
    check_layout('cub', tmp_path / 'CUB_200_2011')


def test_download_starts_over_when_the_server_ignores_the_range(
        server: ArchiveServer, cub_archive: bytes, tmp_path: Path) -> None:
    server.honour_range = False
    (tmp_path / f'{ARCHIVE}.part').write_bytes(b'stale bytes of another file')

    result = download_cub(tmp_path, server.url, md5_of(cub_archive))

    assert result.exit_code == 0, result.output
    assert server.statuses == [200]
    assert (tmp_path / ARCHIVE).read_bytes() == cub_archive


def test_download_of_a_missing_url_is_one_line_naming_it(
        server: ArchiveServer, cub_archive: bytes, tmp_path: Path) -> None:
    url = server.url.replace(ARCHIVE, 'missing.tgz')

    result = download_cub(tmp_path, url, md5_of(cub_archive))

    assert result.exit_code == 2
    line = error_line(result)
    assert url in line and 'HTTP 404' in line


def test_download_of_stanford_cars_explains_there_is_none(tmp_path: Path) -> None:
    result = kt('data', 'download', 'car', '--root', str(tmp_path))

    assert result.exit_code == 2
    line = error_line(result)
    assert 'no working official download' in line
    assert 'car_ims/, cars_annos.mat' in line and 'cars_train/' in line
    assert list(tmp_path.iterdir()) == []
