"""Reliability: crashes, non-finite numbers and bad input never cost a checkpoint or a silent garbage run."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from components.checkpoint import FORMAT, load_checkpoint
from conftest import ENV, REPO, TINY, read_log, run_train, train_cmd, trained
from components.runtime import optimizer_step
from test_let import LET
from test_train import TORCHRUN, copy_dataset


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------ crashes

KILL_AT = os.path.join(REPO, 'tests', 'kill_at.py')


def test_sigkill_at_chosen_moments_then_resume_gives_the_uninterrupted_losses(shakespeare_byte, tmp_path):
    """The training process is killed (SIGKILL) five times, at moments chosen by its own progress (tests/
    kill_at.py): inside an optimizer step, with a checkpoint half written, and with one whole but not yet renamed
    (one every 2 steps); each time the last complete checkpoint loads, and re-running the same command finishes
    the run with exactly the losses of a run that was never interrupted."""
    cfg = dict(TINY, dataset=shakespeare_byte, max_iters=60, eval_interval=2, eval_iters=1, lr_decay_iters=60,
               dropout=0.1, init_from='auto')
    trained(tmp_path / 'whole', run_train(dict(cfg, out_dir=str(tmp_path / 'whole'))))
    expected = [r['lm_loss'] for r in read_log(tmp_path / 'whole', 'train')]

    out = tmp_path / 'killed'
    cmd = train_cmd(dict(cfg, out_dir=str(out)))
    # each kill counts from the process's start; the checkpoint left behind: the step it has
    kills = [('step', 7, 6), ('mid_write', 3, 10), ('before_rename', 2, 12), ('mid_write', 1, 12), ('step', 1, 12)]
    for where, n, step in kills:
        killed = subprocess.run([cmd[0], KILL_AT, where, str(n), *cmd[1:]], capture_output=True, text=True, env=ENV)
        assert killed.returncode == -signal.SIGKILL, (where, killed.stderr[-2000:])
        assert (out / 'ckpt.pt.tmp').exists() == (where != 'step')  # killed inside the write, not after it
        assert load_checkpoint(str(out / 'ckpt.pt'))['iter_num'] == step  # complete, the last one saved
        if where != 'step':
            os.remove(out / 'ckpt.pt.tmp')  # (the next save would overwrite it)
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV)  # the same command, once more
    assert done.returncode == 0, done.stderr[-2000:]
    got = read_log(out, 'train')
    assert [r['iter'] for r in got] == list(range(1, 61))
    assert [r['lm_loss'] for r in got] == expected


WRITER = """
import sys, torch
sys.path.insert(0, {repo!r})
from components.checkpoint import save_checkpoint
i = 0
while True:  # rewrite the checkpoint forever, each version self-consistent, until killed
    i += 1
    save_checkpoint({path!r}, {{'format': {fmt!r}, 'iter_num': i, 'weights': torch.full((1_000_000,), float(i))}})
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_whole(tmp_path):
    """A writer rewrites the checkpoint forever and is killed (SIGKILL, tests/kill_at.py) inside its N-th
    write: with the new version half written, or whole but not yet renamed. The checkpoint found is version
    N - 1, whole: never a mix of two versions, never truncated."""
    path = str(tmp_path / 'ckpt.pt')
    script = tmp_path / 'writer.py'
    script.write_text(WRITER.format(repo=REPO, path=path, fmt=FORMAT))
    for where, n in (('mid_write', 2), ('before_rename', 3), ('mid_write', 5), ('before_rename', 2)):
        killed = subprocess.run([sys.executable, KILL_AT, where, str(n), str(script)], capture_output=True, text=True)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert os.path.exists(path + '.tmp')  # the next version, killed inside its write
        ckpt = load_checkpoint(path)
        assert ckpt['iter_num'] == n - 1 and torch.all(ckpt['weights'] == n - 1)
        os.remove(path + '.tmp')


# ------------------------------------------------------------------ non-finite numbers

def test_a_non_finite_gradient_never_reaches_the_weights_or_the_optimizer():
    """Decided on the device: fused AdamW's found_inf leaves the weights, the moments and the step count as
    they were; optimizer_step returns the decision as a tensor, without reading it."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    before = params(model)
    model(torch.randn(2, 4)).sum().backward()
    model.weight.grad[0, 0] = float('nan')
    skipped, norm = optimizer_step(optimizer, scaler, 1.0, torch.tensor(1.0), distributed=False)
    assert skipped.item() == 1.0 and not torch.isfinite(norm)
    assert all(torch.equal(before[k], v) for k, v in params(model).items())
    assert all(s['step'] == 0 and not s['exp_avg'].any() and not s['exp_avg_sq'].any()
               for s in optimizer.state.values())
    assert all(p.grad is None for p in model.parameters())
    # a finite step then goes through as usual, as the first step AdamW takes
    loss = model(torch.randn(2, 4)).sum()
    loss.backward()
    skipped, _ = optimizer_step(optimizer, scaler, 1.0, loss.detach(), distributed=False)
    assert skipped.item() == 0.0 and not torch.equal(before['weight'], model.weight)
    assert all(s['step'] == 1 for s in optimizer.state.values())
    # an infinite loss alone is enough to skip
    model(torch.randn(2, 4)).sum().backward()
    assert optimizer_step(optimizer, scaler, 1.0, torch.tensor(float('inf')), distributed=False)[0].item() == 1.0


def test_a_float16_overflow_is_skipped_on_the_device_and_lowers_the_loss_scale():
    """In fp16 the step is taken by optimizer_step itself (scaler.step would replace found_inf with its own
    flag); the scaler still sees its overflow and halves the scale."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    scaler = torch.amp.GradScaler('cpu', enabled=True)
    before = params(model)
    loss = model(torch.randn(2, 4)).sum()
    scaler.scale(loss * float('inf')).backward()
    skipped, _ = optimizer_step(optimizer, scaler, 1.0, loss.detach(), distributed=False)
    assert skipped.item() == 1.0 and scaler.get_scale() == 2.0 ** 15
    assert all(torch.equal(before[k], v) for k, v in params(model).items())
    loss = model(torch.randn(2, 4)).sum()
    scaler.scale(loss).backward()
    assert optimizer_step(optimizer, scaler, 1.0, loss.detach(), distributed=False)[0].item() == 0.0
    assert not torch.equal(before['weight'], model.weight)


def test_the_optimizer_step_refuses_an_adamw_that_cannot_skip_on_the_device():
    model = torch.nn.Linear(4, 4)
    model(torch.randn(2, 4)).sum().backward()
    with pytest.raises(ValueError, match='needs fused AdamW'):
        optimizer_step(torch.optim.AdamW(model.parameters()), torch.amp.GradScaler('cpu', enabled=False), 1.0,
                       torch.tensor(1.0), distributed=False)


def test_a_run_of_non_finite_steps_stops_training_and_keeps_the_last_good_checkpoint(tiny_run, shakespeare_byte,
                                                                                   tmp_path):
    tiny_run('run', max_iters=4)
    good = (tmp_path / 'run' / 'ckpt.pt').read_bytes()
    # an absurd learning rate sends the weights to 1e30 in one step; every later loss overflows
    done = run_train(dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / 'run'), init_from='auto',
                          max_iters=20, learning_rate=1e30, min_lr=1e30, warmup_iters=0, max_nonfinite_steps=3))
    assert done.returncode != 0
    assert re.search('3 non-finite steps in a row.*checkpoint .* is intact', done.stderr)
    assert (tmp_path / 'run' / 'ckpt.pt').read_bytes() == good
    logs = read_log(tmp_path / 'run', 'train')
    assert logs[-1]['skipped'] == 2  # logged before the third, fatal one


def test_under_ddp_every_rank_takes_the_same_decision_and_none_hangs(shakespeare_byte, tmp_path):
    cfg = dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / 'ddp'), learning_rate=1e30, min_lr=1e30,
               warmup_iters=0, max_nonfinite_steps=2, max_iters=20, gradient_accumulation_steps=2)
    done = run_train(cfg, launcher=TORCHRUN, timeout=180)
    assert done.returncode != 0
    assert done.stderr.count('2 non-finite steps in a row at iteration 2') == 2  # both ranks, same step


# ------------------------------------------------------------------ bad input, one clear error before compute

def test_out_dir_that_cannot_be_written_is_an_error(tiny_error, tmp_path):
    (tmp_path / 'a_file').write_text('')
    assert 'not writable' in tiny_error('a_file/out')


def test_data_written_as_another_dtype_is_an_error(shakespeare_byte, tiny_error, tmp_path):
    data = copy_dataset(shakespeare_byte, tmp_path / 'data')
    tokens = np.fromfile(data / 'train.bin', dtype=np.uint16)
    tokens.astype(np.uint32).tofile(data / 'train.bin')  # twice the bytes meta.json promises
    assert 'holds 200000 tokens but meta.json says 100000' in tiny_error(dataset=str(data))


def test_metadata_that_disagrees_with_the_data_is_an_error(shakespeare_byte, tiny_error, tmp_path):
    data = copy_dataset(shakespeare_byte, tmp_path / 'data')
    meta = json.loads((data / 'meta.json').read_text())
    meta['vocab_size'] = 100  # bytes go up to 255
    (data / 'meta.json').write_text(json.dumps(meta))
    assert 'outside the vocabulary of 100 in meta.json' in tiny_error(dataset=str(data))


def test_impossible_model_shapes_are_an_error(tiny_error):
    assert 'n_embd=30 is not divisible by n_head=4' in tiny_error(n_embd=30, n_head=4)


def test_block_size_beyond_the_checkpoint_positions_is_an_error(tiny_run, tiny_error):
    tiny_run('run', max_iters=2)
    assert re.search(r"another shape.*'block_size': \(32, 64\)",
                     tiny_error('run', init_from='auto', block_size=64, max_iters=4))


def test_a_teacher_that_cannot_read_block_size_tokens_is_an_error(tiny_error, teacher_ckpt):
    assert 'reads at most 32 tokens, fewer than block_size=64' in tiny_error(teacher=teacher_ckpt, block_size=64, **LET)


def test_resuming_after_the_teacher_changed_width_is_an_error(tiny_run, tiny_error, teacher_ckpt, tmp_path):
    """The teacher file was replaced by a model of another width: the saved projector no longer fits it."""
    spec = tmp_path / 'teacher.pt'
    spec.write_bytes(open(teacher_ckpt, 'rb').read())
    tiny_run('let', teacher=str(spec), **dict(LET, let_stop=6), max_iters=2)
    other = tiny_run('other_teacher', n_embd=16, max_iters=1)
    spec.write_bytes(open(os.path.join(other.out_dir, 'ckpt.pt'), 'rb').read())
    assert re.search('16 wide, but the saved projector was trained for a 48-wide teacher',
                     tiny_error('let', init_from='auto', teacher=str(spec), **dict(LET, let_stop=6), max_iters=4))
