"""A built wheel carries the configs and tools kt needs (tests/test_installed_kt.py runs it).

The wheel is installed into a fresh venv that sees this environment's dependencies through a
``.pth`` file listing its site-packages. Python adds the listed folders to ``sys.path`` but
does not process the ``.pth`` files inside them, so an editable kt install stays invisible.
"""
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What pyproject.toml builds from (a copy keeps build/ and stale build/lib files out).
SOURCES = ['pyproject.toml', 'README.md', 'ktcli', 'registry_plugins', 'ktbase', 'configs',
           'tools']
# Where the wheel puts each source folder.
WHEEL_PATHS = {'ktcli': 'ktcli', 'registry_plugins': 'registry_plugins', 'ktbase': 'ktbase',
               'configs': 'ktcli/configs', 'tools': 'ktcli/tools'}


def _run(*args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env=env)
    assert result.returncode == 0, f'{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
    return result


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / 'source'
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    _run(sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
         '-w', tmp_path / 'dist', source, cwd=tmp_path)
    (wheel,) = (tmp_path / 'dist').glob('kt_fgvc-*.whl')
    return wheel


def _check_wheel_contents(wheel: Path) -> None:
    """Every module, package, config and tool of the source tree is in the wheel (the
    packages are listed by hand in pyproject.toml)."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {f'{WHEEL_PATHS[folder]}/{path.relative_to(REPO / folder).as_posix()}'
                for folder in WHEEL_PATHS for path in (REPO / folder).rglob('*')
                if path.is_file() and '__pycache__' not in path.parts and path.suffix != '.pyc'}
    assert 'ktcli/tools/train.py' in expected
    missing = sorted(expected - names)
    assert not missing, f'not in the wheel (add the package to pyproject.toml?): {missing}'


def _fresh_venv(tmp_path: Path) -> Path:
    venv = tmp_path / 'venv'
    _run(sys.executable, '-m', 'venv', '--without-pip', venv, cwd=tmp_path)
    python = venv / 'bin' / 'python'
    purelib = _run(python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])',
                   cwd=tmp_path).stdout.strip()
    ours = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        ours.append(site.getusersitepackages())
    Path(purelib, 'kt_test_dependencies.pth').write_text(''.join(f'{p}\n' for p in ours))
    return python


def installed_kt(base: Path) -> Path:
    """Build a wheel of this tree, check what it holds, install it into a fresh venv under
    ``base`` and return the venv's ``bin`` folder (its ``kt`` and ``python``)."""
    import ktcli
    wheel = _build_wheel(base)
    _check_wheel_contents(wheel)
    python = _fresh_venv(base)
    if Path(ktcli.__file__).resolve().is_relative_to(REPO):
        # This environment's kt is the source tree's (editable): the new venv must not see it.
        found = _run(python, '-c', 'import importlib.util as u; print(u.find_spec("ktcli"))',
                     cwd=base).stdout.strip()
        assert found == 'None', found
    _run(python, '-m', 'pip', 'install', '-q', '--no-deps', '--ignore-installed', wheel,
         cwd=base)
    return python.parent


def test_the_installed_kt_runs_its_own_files(installed_kt_bin):
    """The wheel's kt imports its own ktcli, configs and tools from its venv."""
    venv = installed_kt_bin.parent.resolve()
    where = [installed_kt_bin / 'python', '-c', 'import ktcli.resources as r; '
             'print(r.__file__); print(r.CONFIG_ROOT); print(r.TRAIN_SCRIPT)']
    paths = [Path(line).resolve() for line in _run(*where, cwd=venv).stdout.split()]
    assert all(p.is_relative_to(venv) and p.exists() for p in paths), paths
