"""The layout: no module of this repository imports one that imports it back (at file or folder level, lazy
imports inside functions included), nothing in the shared folders imports an entry point or a tool, and a plain
run imports none of the optional parts."""

import ast
import os
import subprocess
import sys

from conftest import ENV, REPO, TINY, train_cmd

# what only LET, distillation, FSDP, a foreign teacher or a tokenizer needs: a plain run imports none of it
OPTIONAL = ('let', 'distill', 'teacher', 'teacher_formats', 'components.distributed', 'data.tokenizer', 'data.gguf',
            'data.hub', 'data.write')

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


def test_a_plain_run_imports_none_of_the_optional_parts(shakespeare_byte, tmp_path):
    """The reader of a plain run meets only what it uses: train.py run to its end in this process, then its
    modules listed."""
    settings = dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / 'out'), max_iters=2, eval_interval=2)
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            "print('MODULES', *sorted(sys.modules))")
    done = subprocess.run([sys.executable, '-c', code, *train_cmd(settings)[1:]], capture_output=True, text=True,
                          env=ENV, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split('MODULES', 1)[1].split()
    assert 'model' in loaded and 'components.checkpoint' in loaded  # the list is this run's
    assert not [m for m in loaded if m.split('.')[0] in OPTIONAL or m in OPTIONAL]


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
