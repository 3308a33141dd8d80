"""The reader's path: how many statements of this repository one short training run executes, and in how
many files (coverage.py; config files and tests left out). Run beside nanoGPT's train.py on the same data and
model shape (3 blocks x 128, 4 heads, 8 x 128 tokens, 6 steps on the CPU, evaluation every 3), whose plain run
executes 303 statements in 2 files.

$ python -m dev.reader_path            # the plain run and the LET run (a tiny teacher is trained first)
$ python -m dev.reader_path OTHER      # the same for another checkout of this repository (an older commit)

Needs coverage (pip install coverage) and data/shakespeare/byte (python data/shakespeare/prepare.py).
"""

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = ['--n_layer=3', '--n_embd=128', '--n_head=4', '--block_size=128', '--batch_size=8', '--device=cpu',
         '--compile=False', '--max_iters=6', '--eval_interval=3', '--eval_iters=1', '--log_interval=1',
         '--init_from=scratch', '--progress=False']


def run(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")


def executed(repo, config, extra, tmp, name):
    """{file: statements executed} of `python train.py config SHAPE extra` under coverage."""
    data = os.path.join(tmp, f'{name}.coverage')
    run(['-m', 'coverage', 'run', f'--data-file={data}', f'--source={repo}',
         '--omit=*/config/*,*/tests/*,*/.venv/*', os.path.join(repo, 'train.py'), config, *SHAPE,
         f'--out_dir={os.path.join(tmp, name)}', *extra], repo)
    report = os.path.join(tmp, f'{name}.json')
    run(['-m', 'coverage', 'json', f'--data-file={data}', '-q', '-o', report], repo)
    files = json.load(open(report))['files']
    return {os.path.relpath(os.path.join(repo, f), repo): len(v['executed_lines']) for f, v in files.items()
            if v['executed_lines']}


def show(name, counts):
    print(f"{name}: {sum(counts.values())} statements in {len(counts)} files: "
          + ', '.join(f'{f} {n}' for f, n in sorted(counts.items(), key=lambda x: -x[1])))


def main(repo):
    with tempfile.TemporaryDirectory() as tmp:
        teacher = os.path.join(tmp, 'teacher')
        run(['train.py', 'config/teacher_shakespeare.py', f'--out_dir={teacher}', '--max_iters=20',
             '--eval_interval=20', '--eval_iters=1', '--progress=False', '--device=cpu', '--compile=False'], repo)
        show('plain (config/train_shakespeare_byte.py)',
             executed(repo, 'config/train_shakespeare_byte.py', [], tmp, 'plain'))
        show('LET (config/let_shakespeare.py)', executed(
            repo, 'config/let_shakespeare.py', [f'--teacher={teacher}/ckpt.pt', '--let_stop=4'], tmp, 'let'))


if __name__ == '__main__':
    main(os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else REPO)
