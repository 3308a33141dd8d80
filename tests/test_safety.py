"""
Reading checkpoints safely (checkpoint.read_checkpoint): a .pt file never runs code stored in it unless the user
opts in (--trust_checkpoint), whichever program reads it (train.py resuming or loading a teacher, sample.py), while
real checkpoints (numpy scalars included) load as before; and a checkpoint is memory-mapped, not copied into
each process.
"""

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ENV, REPO
from components.checkpoint import FORMAT, UnsafeCheckpoint, read_checkpoint, save_checkpoint
from configurator import ConfigError
from teacher import load_teacher
from test_teacher_load import tiny_gpt

OPT_IN = '--trust_checkpoint'
RUNS_CODE = 'would run code stored in the file'
SYSTEM = f'{os.system.__module__}.system'  # os.system as a pickle names it: posix.system on Linux


class RunsCode:
    """Unpickling this runs a shell command that creates marker: what a malicious checkpoint can do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def malicious_checkpoint(path, marker, **save):
    """A file that looks like a checkpoint of this repo ('format', 'model', 'model_args') and whose 'config'
    runs code when unpickled."""
    model_args = dict(n_layer=1, n_head=2, n_embd=8, block_size=8, bias=False, vocab_size=256)
    torch.save({'format': FORMAT, 'model': {'lm_head.weight': torch.zeros(256, 8)}, 'model_args': model_args,
                'config': RunsCode(marker)}, path, **save)
    return str(path)


def one_error_line(done):
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), done.stderr
    return lines[0]


def test_a_teacher_that_runs_code_is_refused_by_train_and_nothing_runs(tiny_error, tmp_path):
    path = malicious_checkpoint(tmp_path / 'teacher.pt', tmp_path / 'marker')
    msg = tiny_error(teacher=path, let_lambda=1.0, let_layers=(0,))
    assert path in msg and SYSTEM in msg and RUNS_CODE in msg and '--trust_checkpoint=True' in msg
    assert 'not a checkpoint' not in msg  # the refusal is not buried as a corrupt file
    assert not (tmp_path / 'marker').exists()


def test_sample_refuses_a_checkpoint_that_runs_code_and_nothing_runs(tmp_path):
    path = malicious_checkpoint(tmp_path / 'ckpt.pt', tmp_path / 'marker')
    done = subprocess.run([sys.executable, 'sample.py', f'--init_from={path}', '--num_samples=1',
                           '--max_new_tokens=2', '--device=cpu'], capture_output=True, text=True, env=ENV, cwd=REPO,
                          timeout=300)
    msg = one_error_line(done)
    assert SYSTEM in msg and RUNS_CODE in msg and OPT_IN in msg
    assert not (tmp_path / 'marker').exists()


def test_resuming_from_a_checkpoint_that_runs_code_is_refused_and_nothing_runs(tiny_error, tmp_path):
    (tmp_path / 'bad').mkdir()
    path = malicious_checkpoint(tmp_path / 'bad' / 'ckpt.pt', tmp_path / 'marker')
    msg = tiny_error('bad', init_from='auto')
    assert path in msg and SYSTEM in msg and RUNS_CODE in msg and '--trust_checkpoint=True' in msg
    assert not (tmp_path / 'marker').exists()


@pytest.mark.parametrize('kind', ['zip', 'legacy', 'protocol 4'])
def test_a_file_the_safe_loader_refuses_is_never_unpickled_without_the_opt_in(tmp_path, kind):
    """Whatever makes weights_only fail (an unsafe global in either file format, or a pickle protocol its parser
    does not read), the file is not retried with the full unpickler."""
    save = {'zip': {}, 'legacy': {'_use_new_zipfile_serialization': False}, 'protocol 4': {'pickle_protocol': 4}}
    path = malicious_checkpoint(tmp_path / 'ckpt.pt', tmp_path / 'marker', **save[kind])
    with pytest.raises(ConfigError) as refused:  # torch's warning about the protocol is silenced: one error
        read_checkpoint(path)
    if kind != 'protocol 4':  # the other one cannot be parsed safely, so it is reported as unreadable
        assert isinstance(refused.value, UnsafeCheckpoint) and SYSTEM in str(refused.value)
    assert not (tmp_path / 'marker').exists()


def test_with_the_opt_in_a_checkpoint_holding_a_python_object_loads(tmp_path):
    path = str(tmp_path / 'ckpt.pt')
    torch.save({'model': {'w': torch.ones(2)}, 'args': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpoint, match=r'argparse\.Namespace.*' + OPT_IN):
        read_checkpoint(path)
    ckpt = read_checkpoint(path, trust=True)
    assert ckpt['args'] == argparse.Namespace(lr=0.1) and torch.equal(ckpt['model']['w'], torch.ones(2))


def test_the_opt_in_reaches_train_and_sample(tiny_run, tiny_error, teacher_ckpt, tmp_path):
    """A teacher checkpoint that holds a harmless Python object (an argparse.Namespace, as many scripts save):
    refused by default, used with the opt-in by train.py (--trust_checkpoint=True) and sample.py."""
    ckpt = torch.load(teacher_ckpt, map_location='cpu', weights_only=True)
    path = str(tmp_path / 'teacher.pt')
    torch.save(dict(ckpt, args=argparse.Namespace(lr=0.1)), path)
    let = dict(teacher=path, let_lambda=1.0, let_stop=2, let_layers=(0,), let_proj='linear', max_iters=2,
               eval_interval=2, lr_decay_iters=2)
    assert OPT_IN in tiny_error(**let)
    tiny_run('trusted', trust_checkpoint=True, **let)
    done = subprocess.run([sys.executable, 'sample.py', f'--init_from={path}', OPT_IN, '--num_samples=1',
                           '--max_new_tokens=2', '--device=cpu'], capture_output=True, text=True, env=ENV, cwd=REPO,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_numpy_scalars_of_a_nanogpt_checkpoint_load_without_the_opt_in(tmp_path):
    source = tiny_gpt()
    model_args = dict(n_layer=2, n_head=4, n_embd=32, block_size=64, bias=True, vocab_size=50304, dropout=0.0)
    path = str(tmp_path / 'ckpt.pt')
    torch.save({'model': source.state_dict(), 'model_args': model_args, 'iter_num': np.int64(3),
                'best_val_loss': np.float64(1.5), 'lr': np.float32(0.25), 'done': np.bool_(True),
                'dtype': np.dtype('float16')}, path)
    ckpt = read_checkpoint(path, trust=False)
    assert ckpt['iter_num'] == 3 and isinstance(ckpt['iter_num'], np.int64)
    assert ckpt['best_val_loss'] == 1.5 and isinstance(ckpt['best_val_loss'], np.float64)
    assert ckpt['lr'] == np.float32(0.25) and ckpt['done'] and ckpt['dtype'] == np.float16
    assert load_teacher(path, trust=False).width == 32


def mapped_from(tensor, path):
    """Whether tensor's memory lies in a mapping of the file path (/proc/self/maps)."""
    ptr, path = tensor.untyped_storage().data_ptr(), os.path.realpath(path)
    with open('/proc/self/maps') as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == path:
                lo, hi = (int(x, 16) for x in fields[0].split('-'))
                if lo <= ptr < hi:
                    return True
    return False


LINUX_MAPS = pytest.mark.skipif(not os.path.exists('/proc/self/maps'), reason="needs Linux's /proc/self/maps")


@LINUX_MAPS
def test_a_checkpoint_is_memory_mapped_and_a_legacy_one_still_loads(tmp_path):
    """Every process of a node reads a checkpoint's tensors through the page cache instead of its own copy; a
    file in torch's legacy (non-zip) format cannot be mapped and is read whole."""
    path, legacy = str(tmp_path / 'ckpt.pt'), str(tmp_path / 'legacy.pt')
    weights = {'w': torch.arange(6.).view(2, 3)}
    save_checkpoint(path, {'model': weights, 'best_val_loss': np.float64(2.0)})
    torch.save({'model': weights, 'best_val_loss': np.float64(2.0)}, legacy, _use_new_zipfile_serialization=False)
    for file, mapped in ((path, True), (legacy, False)):
        ckpt = read_checkpoint(file)
        assert torch.equal(ckpt['model']['w'], weights['w']) and ckpt['best_val_loss'] == 2.0
        assert mapped_from(ckpt['model']['w'], file) == mapped


@LINUX_MAPS
def test_a_mapped_checkpoint_resumes_an_optimizer_and_survives_its_replacement(tmp_path):
    """train.py loads the optimizer from the mapped file, steps it in place and replaces the file with its next
    save (os.replace): the file never changes under the mapping, and the loaded tensors keep their values."""
    path = str(tmp_path / 'ckpt.pt')
    model = torch.nn.Linear(16, 16)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 16)).sum().backward()
    optimizer.step()
    save_checkpoint(path, {'model': model.state_dict(), 'optimizer': optimizer.state_dict()})
    ckpt = read_checkpoint(path)
    assert mapped_from(ckpt['model']['weight'], path) and mapped_from(ckpt['optimizer']['state'][0]['exp_avg'], path)
    saved, saved_avg = ckpt['model']['weight'].clone(), ckpt['optimizer']['state'][0]['exp_avg'].clone()
    resumed = torch.nn.Linear(16, 16)
    resumed.load_state_dict(ckpt['model'])
    again = torch.optim.AdamW(resumed.parameters())
    again.load_state_dict(ckpt['optimizer'])
    resumed(torch.randn(4, 16)).sum().backward()
    again.step()  # in place, on the optimizer state it loaded: a private copy of those pages, never the file
    assert not torch.equal(again.state[resumed.weight]['exp_avg'], saved_avg)
    assert torch.equal(read_checkpoint(path)['optimizer']['state'][0]['exp_avg'], saved_avg)
    save_checkpoint(path, {'model': {'weight': torch.zeros(16, 16)}})
    assert torch.equal(ckpt['model']['weight'], saved)
    assert torch.equal(read_checkpoint(path)['model']['weight'], torch.zeros(16, 16))

