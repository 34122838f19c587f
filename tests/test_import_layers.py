"""kt's import layers, read from the source with ``ast`` (nothing is imported): no import
circles, and each package imports only the packages below it.

``ktbase`` is at the bottom and imports neither of the others; ``registry_plugins`` imports
nothing from ``ktcli`` (a config's ``custom_imports=['registry_plugins']`` must not load the
command line); ``ktcli`` may import both. Inside ``ktcli``, imports run down
:data:`KTCLI_LAYERS` (data < stages < scoring < sequencing < reports < commands). Imports
inside functions count: one there only
postpones a circle to the first call. Imports under ``if TYPE_CHECKING:`` never run and do
not count.
"""
import ast
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from .conftest import REPO

# Which of kt's packages each one may import, bottom layer first.
LAYERS = {'ktbase': (), 'registry_plugins': ('ktbase',),
          'ktcli': ('ktbase', 'registry_plugins')}

# ktcli's own layers, bottom first (docs/architecture.md draws them): a module imports only
# from its own layer and those below. A package stands for all its modules.
KTCLI_LAYERS = [
    ('ktcli', 'ktcli.errors', 'ktcli.reading', 'ktcli.cpus', 'ktcli.devices', 'ktcli.resources',
     'ktcli.received_values'),
    ('ktcli.data',),
    ('ktcli.stages',),
    ('ktcli.runner', 'ktcli.scoring'),
    ('ktcli.sequencing', 'ktcli.deployment'),
    ('ktcli.reports',),
    ('ktcli.commands',),
    ('ktcli.main', 'ktcli.__main__'),
]

# Each module's imports of kt's modules: the module imported and the line of the first import.
ImportGraph = Dict[str, Dict[str, int]]


def module_files(root: Path, packages: List[str]) -> Dict[str, Path]:
    """Every module of ``packages`` under ``root`` by dotted name (a package by its own
    name, read from its ``__init__.py``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob('*.py')):
            parts = path.relative_to(root).with_suffix('').parts
            modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` tests ``TYPE_CHECKING`` (or ``typing.TYPE_CHECKING``)."""
    return (isinstance(test, ast.Name) and test.id == 'TYPE_CHECKING'
            or isinstance(test, ast.Attribute) and test.attr == 'TYPE_CHECKING')


def _import_statements(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every import statement of ``tree``, at any depth, but those under ``if TYPE_CHECKING``."""
    nodes = [tree]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            nodes.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        nodes.extend(ast.iter_child_nodes(node))


def _imported_names(node: ast.stmt, package: str, modules: Dict[str, Path]) -> List[str]:
    """The dotted names an import statement loads, a relative import resolved against
    ``package`` (the package of the module holding it)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        parts = package.split('.')
        source = '.'.join(parts[:len(parts) - node.level + 1]
                          + ([node.module] if node.module else []))
    else:
        source = node.module
    # ``from a import b`` loads the module a.b where there is one, else takes a name of a.
    return [f'{source}.{alias.name}' if f'{source}.{alias.name}' in modules else source
            for alias in node.names]


def _closest_module(name: str, modules: Dict[str, Path]) -> str:
    """``name`` if it is one of ``modules``, else the closest package of them above it;
    '' outside them."""
    parts = name.split('.')
    for end in range(len(parts), 0, -1):
        if '.'.join(parts[:end]) in modules:
            return '.'.join(parts[:end])
    return ''


def import_graph(modules: Dict[str, Path]) -> ImportGraph:
    """Which of ``modules`` each one imports, anywhere in its code.

    An import is an arrow to the module it names: ``from .x import f`` to the sibling
    ``x`` only. Python runs the package's ``__init__`` first, but a package that imports
    its own modules makes no circle with them.
    """
    graph: ImportGraph = {}
    for name, path in modules.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        arrows: Dict[str, int] = {}
        for node in _import_statements(ast.parse(path.read_text(), str(path))):
            for imported in _imported_names(node, package, modules):
                target = _closest_module(imported, modules)
                if target and target != name:
                    arrows[target] = min(arrows.get(target, node.lineno), node.lineno)
        graph[name] = arrows
    return graph


def circles(graph: ImportGraph) -> List[List[str]]:
    """The import circles of ``graph``: its strongly connected components of more than one
    module (Tarjan's algorithm), each sorted, in order of their first module."""
    order: Dict[str, int] = {}
    lowest: Dict[str, int] = {}
    stack: List[str] = []
    found = []

    def visit(module: str) -> None:
        order[module] = lowest[module] = len(order)
        stack.append(module)
        for target in sorted(graph.get(module, {})):
            if target not in order:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in stack:
                lowest[module] = min(lowest[module], order[target])
        if lowest[module] == order[module]:
            component = [stack.pop()]
            while component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return sorted(found)


def shown_circle(circle: List[str], graph: ImportGraph) -> str:
    """A circle's modules, then its arrows with the line of each import."""
    arrows = [f'    {module} -> {target} (line {graph[module][target]})'
              for module in circle for target in sorted(graph[module]) if target in circle]
    return '\n'.join([f'  {", ".join(circle)}'] + arrows)


@pytest.fixture(scope='module')
def kt_graph() -> ImportGraph:
    """The import graph of kt's own packages in this source tree."""
    return import_graph(module_files(REPO, list(LAYERS)))


@pytest.mark.parametrize('package', list(LAYERS))
def test_no_import_circle(kt_graph: ImportGraph, package: str) -> None:
    found = [circle for circle in circles(kt_graph)
             if any(module.split('.')[0] == package for module in circle)]

    assert not found, (f'{len(found)} import circle(s) through {package} (each: its modules, '
                       'then the arrows between them):\n'
                       + '\n'.join(shown_circle(circle, kt_graph) for circle in found))


@pytest.mark.parametrize('package', list(LAYERS))
def test_a_package_imports_only_the_layers_below_it(kt_graph: ImportGraph,
                                                    package: str) -> None:
    allowed = {package, *LAYERS[package]}
    wrong = [f'  {module} -> {target} (line {line})'
             for module, arrows in sorted(kt_graph.items()) if module.split('.')[0] == package
             for target, line in sorted(arrows.items()) if target.split('.')[0] not in allowed]

    assert not wrong, (f'{package} may import only {sorted(allowed)}, but:\n'
                       + '\n'.join(wrong))


def ktcli_layer(module: str) -> int:
    """The index in :data:`KTCLI_LAYERS` of the entry that is ``module`` or a package above it
    (the bare ``ktcli`` stands for its ``__init__`` only); -1 where none is."""
    for index, layer in enumerate(KTCLI_LAYERS):
        if any(module == entry or entry != 'ktcli' and module.startswith(entry + '.')
               for entry in layer):
            return index
    return -1


def upward_imports(graph: ImportGraph) -> List[str]:
    """Each import of a ktcli module by one of a lower layer, with its line."""
    return [f'  {module} (layer {ktcli_layer(module)}) -> {target} (layer '
            f'{ktcli_layer(target)}, line {line})'
            for module, arrows in sorted(graph.items()) if module.split('.')[0] == 'ktcli'
            for target, line in sorted(arrows.items())
            if target.split('.')[0] == 'ktcli' and ktcli_layer(target) > ktcli_layer(module)]


def test_every_ktcli_module_has_a_layer(kt_graph: ImportGraph) -> None:
    unplaced = [module for module in kt_graph
                if module.split('.')[0] == 'ktcli' and ktcli_layer(module) < 0]

    assert unplaced == [], f'add these to KTCLI_LAYERS: {unplaced}'
    assert (ktcli_layer('ktcli.stages.records'), ktcli_layer('ktcli.sequencing.sequence'),
            ktcli_layer('ktcli.new_package.module')) == (2, 4, -1)


def test_ktcli_imports_run_down_its_layers(kt_graph: ImportGraph) -> None:
    upward = upward_imports(kt_graph)

    assert not upward, 'imports up ktcli\'s layers (KTCLI_LAYERS):\n' + '\n'.join(upward)
    # The check itself: scoring reading the training of a sequence would be an arrow up.
    assert upward_imports({'ktcli.scoring.test_outputs': {'ktcli.sequencing.sequence': 7,
                                                          'ktcli.stages.records': 3}}) == [
        '  ktcli.scoring.test_outputs (layer 3) -> ktcli.sequencing.sequence (layer 4, line 7)']


def test_the_graph_finds_circles_through_functions_and_relative_imports(tmp_path: Path):
    files = {
        'pkg/__init__.py': 'from .a import f\n',
        'pkg/a.py': 'from .b import g\nfrom .e import E\n\ndef f():\n    pass\n',
        # Function-level, and ``from . import a`` names the module pkg.a.
        'pkg/b.py': 'def g():\n    from . import a\n',
        'pkg/c.py': 'import pkg.sub.d\n',
        'pkg/sub/__init__.py': '',
        'pkg/sub/d.py': 'from .. import c\n',
        # Never runs: no circle with pkg.a.
        'pkg/e.py': 'from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n'
                    '    from .a import f\nE = 1\n',
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    graph = import_graph(module_files(tmp_path, ['pkg']))

    assert circles(graph) == [['pkg.a', 'pkg.b'], ['pkg.c', 'pkg.sub.d']]
    assert graph['pkg.e'] == {}
    assert shown_circle(['pkg.a', 'pkg.b'], graph) == (
        '  pkg.a, pkg.b\n    pkg.a -> pkg.b (line 1)\n    pkg.b -> pkg.a (line 2)')
