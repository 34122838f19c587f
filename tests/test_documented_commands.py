"""Every `kt ...` command in the README's and docs' shell blocks runs as written: it parses
with kt's own command line (options, choices, values), and the demo ones plan their stages
with --dry-run."""
import re
import shlex
from pathlib import Path
from typing import List, Tuple

import pytest
import typer

from ktcli.main import app, expand_multi_value_options

from .conftest import REPO
from .kt_processes import forked_kt

DOCUMENTS = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]


def shell_lines(text: str) -> List[str]:
    """The command lines of a Markdown text's ```bash blocks: continuations joined,
    comments dropped."""
    lines = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            line = re.split(r'\s#', line, maxsplit=1)[0].strip()
            if line:
                lines.append(line)
    return lines


def documented_commands() -> List[Tuple[str, List[str]]]:
    """(where, kt's arguments) of every kt command in the documents, the README's set-up
    command's `.venv/bin/kt ...` included."""
    commands = []
    for document in DOCUMENTS:
        for line in shell_lines(document.read_text()):
            for part in line.split('&&'):
                words = shlex.split(part)
                if words and Path(words[0]).name == 'kt':
                    commands.append((f'{document.name}: {part.strip()}', words[1:]))
    return commands


COMMANDS = documented_commands()


def parse(args: List[str]):
    """Parse ``args`` as `kt` would, down to the subcommand; return that command."""
    command = typer.main.get_command(app)
    context = command.make_context('kt', expand_multi_value_options(args))
    # A group (Typer's, whose Click may not be the click module) resolves its subcommand.
    while hasattr(command, 'resolve_command'):
        name, command, rest = command.resolve_command(context, context._protected_args
                                                      + context.args)
        context = command.make_context(name, rest, parent=context)
    return command


def test_the_documents_hold_the_commands_a_reader_copies():
    names = {args[0] for _, args in COMMANDS}
    assert {'train', 'ensemble', 'ablate', 'export', 'predict', 'distill', 'visualize',
            'report', 'status', 'data'} <= names
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize('where, args', COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_parses(where, args):
    parse(args)


DEMO_PLANS = [(where, args) for where, args in COMMANDS
              if args[0] in ('train', 'ablate') and 'demo' in args and '--launcher' not in args]


@pytest.mark.usefixtures('kt_server')
def test_the_demo_commands_plan_their_stages(tmp_path, demo_root):
    """The demo commands (the README's main job among them) in a folder whose
    data/kt_demo is the tests' demo data: each plans its stages and exits."""
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'kt_demo').symlink_to(demo_root, target_is_directory=True)
    assert any('README.md' in where for where, _ in DEMO_PLANS)
    for where, args in DEMO_PLANS:
        result = forked_kt(*args, '--dry-run', cwd=tmp_path)
        assert result.returncode == 0, (where, result.stdout[-2000:], result.stderr[-2000:])
        assert re.search(r'\d+ distinct stages?: 0 reused, \d+ to train', result.stdout), where


@pytest.mark.parametrize('document', DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_links_between_the_documents_lead_to_files(document):
    for target in re.findall(r'\]\(([^)#:\s]+)(?:#[^)]*)?\)', document.read_text()):
        assert (document.parent / target).exists(), f'{document.name} links to {target}'
