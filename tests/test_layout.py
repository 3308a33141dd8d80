"""The layout: no module of this repository imports one that imports it back (at file or folder level, lazy
imports inside functions included), and nothing in the shared folders imports an entry point or a tool."""

import ast
import os

from conftest import REPO

ENTRY_POINTS = {'train', 'sample', 'speedup', 'speedup_report'}
SHARED = ('components', 'data', 'teacher_formats')


def modules():
    """{module name: set of this repository's modules it imports}, for every .py file outside tests/ and .venv/."""
    found = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith('.') and d not in ('tests', 'config', '__pycache__')]
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                module = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.').removesuffix('.__init__')
                found[module] = path
    graph = {}
    for module, path in found.items():
        imported = set()
        for node in ast.walk(ast.parse(open(path).read())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            imported.update(n for n in names if n in found)
            if isinstance(node, ast.ImportFrom) and node.module in found:  # from components import checkpoint
                imported.update(f'{node.module}.{a.name}' for a in node.names if f'{node.module}.{a.name}' in found)
        graph[module] = imported - {module}
    return graph


def cycle(graph):
    """One import cycle as a list of names, or None."""
    state = {}

    def visit(node, path):
        state[node] = 'open'
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 'open':
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 'done'
        return None
    return next((c for n in graph if n not in state and (c := visit(n, [n]))), None)


def folder(module):
    return module.split('.')[0] if '.' in module else '.'


def test_no_module_imports_one_that_imports_it_back():
    assert cycle(modules()) is None, cycle(modules())


def test_no_folder_imports_one_that_imports_it_back():
    folders = {}
    for module, imported in modules().items():
        folders.setdefault(folder(module), set()).update(folder(m) for m in imported if folder(m) != folder(module))
    assert cycle({f: i - {'.'} for f, i in folders.items() if f != '.'}) is None


def test_the_shared_folders_import_no_entry_point_and_no_tool():
    bad = {m: sorted(i) for m, imported in modules().items() if m.startswith(SHARED)
           if (i := {x for x in imported if x in ENTRY_POINTS or x.startswith(('tools', 'dev'))})}
    assert not bad, bad
