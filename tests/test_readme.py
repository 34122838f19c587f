"""The README's two set-up commands, and .ci/run running its test command as written."""
import re

import pytest

from .conftest import REPO

# pytest options that change only what it reports (the slowest tests, the summary), never
# which tests run or how: the only ones .ci/run may add to the README's test command.
REPORTING_OPTION = re.compile(r'--durations=\d+|--durations-min=[\d.]+|-r[a-zA-Z]+')
README_TESTS = ".venv/bin/python -m pytest -q"


def readme_commands() -> list:
    readme = (REPO / 'README.md').read_text()
    return re.findall(r'```bash\n(python3 -m venv .venv && [^\n]+)\n```', readme)


def added_options(script: str, command: str) -> list:
    """For each line of ``script`` that runs ``command``, the options it adds after it."""
    return [line[len(command):].split() for line in script.splitlines()
            if line == command or line.startswith(command + ' ')]


def only_reporting(options: list) -> bool:
    return all(REPORTING_OPTION.fullmatch(option) for option in options)


def test_readme_has_exactly_two_setup_commands():
    main_job, tests = readme_commands()
    assert 'pytest' not in main_job and 'kt train --dataset demo' in main_job
    assert 'pytest' in tests


def test_ci_runs_the_readme_test_command_adding_only_reporting_options():
    _, tests = readme_commands()
    [added] = added_options((REPO / '.ci' / 'run').read_text(), tests)
    assert only_reporting(added), added


@pytest.mark.parametrize('line, allowed', [
    (README_TESTS, True),
    (f'{README_TESTS} --durations=20', True),
    (f'{README_TESTS} --durations=20 --durations-min=0.5 -rs', True),
    (f'{README_TESTS} -x', False),
    (f'{README_TESTS} -k readme', False),
    (f'{README_TESTS} tests/test_readme.py', False),
    (f'{README_TESTS} --deselect tests/test_resume.py', False),
    (f'{README_TESTS} --durations=20 || true', False),
])
def test_only_reporting_options_may_be_added(line, allowed):
    [added] = added_options(f'set -e\n{line}\n', README_TESTS)
    assert only_reporting(added) is allowed
