import re

from .conftest import REPO


def readme_commands() -> list:
    readme = (REPO / 'README.md').read_text()
    return re.findall(r'```bash\n(python3 -m venv .venv && [^\n]+)\n```', readme)


def test_readme_has_exactly_two_setup_commands():
    main_job, tests = readme_commands()
    assert 'pytest' not in main_job and 'kt train --dataset demo' in main_job
    assert 'pytest' in tests


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = readme_commands()
    ci_lines = (REPO / '.ci' / 'run').read_text().splitlines()
    assert tests in ci_lines
