"""Run many kt commands quickly, each in a process of its own.

Starting Python and importing torch, mmengine and mmpretrain costs a few seconds per
command; tests that run dozens of commands (the received-work-dir cases, the fuzz test)
start one server process that imports kt once, which forks a child per command. Each child
is a real process: it runs ``kt ARGS`` (``ktcli.main.app``) with its own working folder,
standard streams and exit code, exactly as ``python -m ktcli ARGS`` would after its imports,
and an uncaught exception prints its traceback as Python does. The server runs no model
before forking, so no thread pool is inherited.

    with KtServer() as kt:
        result = kt.run('status', work_dir)      # a subprocess.CompletedProcess

The suite shares one server (tests/conftest.py's ``kt_server`` fixture): a test that requests
it runs commands through :func:`forked_kt`.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[1]
# The session's server while tests/conftest.py's kt_server fixture holds it.
SESSION_SERVERS: List['KtServer'] = []


class KtServer:
    """A process that forks a child per kt command (see the module docstring).

    Args:
        timeout (float): Seconds a command may take before it is killed.
            Defaults to 300.
    """

    def __init__(self, timeout: float = 300) -> None:
        self.timeout = timeout
        self._process: Optional[subprocess.Popen] = None

    def __enter__(self) -> 'KtServer':
        self._process = subprocess.Popen(
            [sys.executable, '-c', f'import sys; sys.path.insert(0, {str(REPO)!r}); '
             'from tests.kt_processes import serve; serve()'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        return self

    def __exit__(self, *exc) -> None:
        self._process.stdin.close()
        self._process.wait(timeout=60)

    def run(self, *args, cwd: Path = REPO, env: Optional[dict] = None,
            timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        """Run ``kt ARGS`` in a forked child; its exit code and output.

        Args:
            cwd (Path): The child's working folder.
            env (dict, optional): The child's whole environment. Defaults to the
                server's.
            timeout (float, optional): Seconds before the child is killed. Defaults to
                the server's.
        """
        args = [str(arg) for arg in args]
        request = dict(args=args, cwd=str(cwd), env=env,
                       timeout=self.timeout if timeout is None else timeout)
        self._process.stdin.write(json.dumps(request) + '\n')
        self._process.stdin.flush()
        reply = json.loads(self._process.stdout.readline())
        return subprocess.CompletedProcess(['kt', *args], reply['code'], reply['stdout'],
                                           reply['stderr'])


def forked_kt(*args, cwd: Path = REPO, env: Optional[dict] = None,
              timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """``kt ARGS`` forked from the session's server, in this process's environment (as a
    subprocess would inherit it, a test's monkeypatched variables included) plus ``env``.
    The test (or a fixture it uses) requests the ``kt_server`` fixture."""
    assert SESSION_SERVERS, 'forked_kt needs the kt_server fixture'
    return SESSION_SERVERS[-1].run(*args, cwd=cwd, env={**os.environ, **(env or {})},
                                   timeout=timeout)


def serve() -> None:
    """The server's loop: one JSON request per line in, one reply per line out."""
    import ktcli.main  # noqa: F401  (the imports every child shares)
    import registry_plugins  # noqa: F401
    from ktcli.stages.config_files import registered_types
    registered_types()
    replies = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        with tempfile.TemporaryDirectory(prefix='kt_forked_') as folder:
            out, err = Path(folder) / 'stdout', Path(folder) / 'stderr'
            pid = os.fork()
            if pid == 0:
                _child(request, out, err)
            code = _wait(pid, request['timeout'])
            replies.write(json.dumps(dict(code=code, stdout=out.read_text(errors='replace'),
                                          stderr=err.read_text(errors='replace'))) + '\n')
            replies.flush()


def _child(request: dict, out: Path, err: Path) -> None:
    """Run one command in this forked child and exit with its code (never returns)."""
    code = 1
    try:
        os.chdir(request['cwd'])
        if request['env'] is not None:
            os.environ.clear()
            os.environ.update(request['env'])
        for stream, path in ((1, out), (2, err)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(descriptor, stream)
            os.close(descriptor)
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        sys.argv = ['kt', *request['args']]
        from ktcli.main import app
        app(args=request['args'], prog_name='kt')
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> int:
    """The child's exit code (negative: the signal that ended it); killed after ``timeout``."""
    import signal
    import time
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
