"""train.py: the loop, its data order, accumulation, resume, DDP and its errors on bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import train
from configurator import ConfigError
from conftest import REPO, TINY, read_log


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_a_few_dozen_steps_reduce_the_loss_on_real_data(tiny_run):
    run = tiny_run(max_iters=40, eval_interval=40, lr_decay_iters=40)
    first, last = run.records[0], run.records[-1]
    assert (first['iter'], last['iter']) == (0, 40)
    assert last['val_loss'] < first['val_loss'] - 1.0  # from about ln(256) = 5.5 towards character statistics


def test_two_micro_batches_of_4_give_the_same_update_as_one_batch_of_8(tiny_run):
    a = tiny_run('accum', batch_size=4, gradient_accumulation_steps=2, max_iters=3)
    b = tiny_run('batch', batch_size=8, gradient_accumulation_steps=1, max_iters=3)
    # the same 8 sequences per step; only float summation order differs (fp32)
    assert max_diff(params(a.model), params(b.model)) < 1e-6


def test_resume_continues_exactly_where_the_run_stopped(tiny_run, tmp_path):
    common = dict(max_iters=12, dropout=0.1)  # dropout: the random streams must continue exactly too
    tiny_run('whole', **common)
    tiny_run('split', **dict(common, max_iters=6))  # stops at step 6 with its checkpoint
    resumed = tiny_run('split', **dict(common, init_from='auto'))
    whole = read_log(tmp_path / 'whole', 'train')
    split = read_log(tmp_path / 'split', 'train')
    assert [r['iter'] for r in split] == list(range(1, 13))  # the log continues without duplicates
    assert [r['lm_loss'] for r in split[6:]] == [r['lm_loss'] for r in whole[6:]]  # steps 7..12, exactly
    split_evals = {r['iter']: r['val_loss'] for r in read_log(tmp_path / 'split', 'eval')}
    whole_evals = {r['iter']: r['val_loss'] for r in read_log(tmp_path / 'whole', 'eval')}
    assert sorted(split_evals) == [0, 4, 6, 8, 12]  # the first segment also evaluated at its end, step 6
    assert all(split_evals[i] == whole_evals[i] for i in (8, 12))
    assert resumed.records[0]['iter'] == 8  # the first evaluation after the resume point


def test_ranks_read_disjoint_windows_that_together_are_the_single_process_batch(shakespeare_byte):
    windows = train.TokenWindows(os.path.join(shakespeare_byte, 'train.bin'), 32, seed=1)
    B, world, accum, G = 4, 2, 2, 16  # global batch G = B * accum * world
    for step in range(3):
        per_rank = [[w for m in range(accum) for w in windows.train_windows(step * G + (m * world + r) * B, B)]
                    for r in range(world)]
        assert not set(per_rank[0]) & set(per_rank[1])
        assert sorted(per_rank[0] + per_rank[1]) == sorted(windows.train_windows(step * G, G))
    # within an epoch no window repeats
    seen = windows.train_windows(0, 1000)
    assert len(set(seen)) == 1000


def torchrun(nproc, overrides, out):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
           os.path.join(REPO, 'tests', 'ddp_worker.py'), json.dumps(overrides), str(out)]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [torch.load(out / f'rank{r}.pt') for r in range(nproc)]


def test_ddp_on_two_cpu_processes_matches_one_process_with_twice_the_accumulation(shakespeare_byte, tmp_path):
    cfg = dict(TINY, dataset=shakespeare_byte, max_iters=4, batch_size=4, gradient_accumulation_steps=2)
    rank0, rank1 = torchrun(2, dict(cfg, out_dir=str(tmp_path / 'ddp')), tmp_path)
    assert max_diff(rank0, rank1) == 0.0  # DDP keeps the replicas bit-identical
    single = train.main([], dict(cfg, out_dir=str(tmp_path / 'single')))
    # gloo averages across ranks in another order than one process sums micro-batches: fp32 rounding only
    assert max_diff(rank0, params(single.model)) < 1e-5
    # both evaluate the same windows: the eval set does not depend on the number of ranks
    assert read_log(tmp_path / 'ddp', 'eval')[-1]['val_loss'] == pytest.approx(
        single.records[-1]['val_loss'], abs=1e-5)


# ------------------------------------------------------------------ bad input: one clear error, nothing lost

def test_unknown_setting_is_an_error_with_a_suggestion():
    with pytest.raises(ConfigError, match="unknown setting 'learning_rat'.*did you mean 'learning_rate'"):
        train.main(['--learning_rat=0.1'])


def test_a_value_of_the_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match='max_iters must be int'):
        train.main(['--max_iters=1.5'])
    with pytest.raises(ConfigError, match='batch_size must be int'):
        train.main([], {'batch_size': '32'})


def test_config_files_are_checked_too(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text("n_layers = 4\n")
    with pytest.raises(ConfigError, match=r"bad.py: unknown setting 'n_layers'.*'n_layer'"):
        train.main([str(bad)])


def test_missing_dataset_names_the_prepare_script(tmp_path):
    with pytest.raises(ConfigError, match='prepare'):
        train.main([], dict(TINY, dataset=str(tmp_path / 'nothing'), out_dir=str(tmp_path / 'o')))


def copy_dataset(src, dst):
    dst.mkdir()
    for name in ('train.bin', 'val.bin', 'meta.json'):
        (dst / name).write_bytes((open(os.path.join(src, name), 'rb')).read()[:200_000] if name != 'meta.json'
                                 else open(os.path.join(src, name), 'rb').read())
    meta = json.loads((dst / 'meta.json').read_text())
    meta.update(train_tokens=100_000, val_tokens=100_000)
    (dst / 'meta.json').write_text(json.dumps(meta))
    return dst


def test_token_id_outside_the_vocabulary_is_an_error_before_training(shakespeare_byte, tmp_path):
    data = copy_dataset(shakespeare_byte, tmp_path / 'data')
    tokens = np.memmap(data / 'train.bin', dtype=np.uint16, mode='r+')
    tokens[500] = 300  # the byte vocabulary has 256 ids
    tokens.flush()
    del tokens
    with pytest.raises(ConfigError, match='token id 300, outside the vocabulary of 256'):
        train.main([], dict(TINY, dataset=str(data), out_dir=str(tmp_path / 'o')))
    assert not (tmp_path / 'o' / 'ckpt.pt').exists()


def test_truncated_data_file_is_an_error(shakespeare_byte, tmp_path):
    data = copy_dataset(shakespeare_byte, tmp_path / 'data')
    with open(data / 'val.bin', 'r+b') as f:
        f.truncate(99_999)
    with pytest.raises(ConfigError, match='odd number of bytes'):
        train.main([], dict(TINY, dataset=str(data), out_dir=str(tmp_path / 'o')))
    with open(data / 'val.bin', 'r+b') as f:
        f.truncate(99_998)
    with pytest.raises(ConfigError, match='meta.json says 100000'):
        train.main([], dict(TINY, dataset=str(data), out_dir=str(tmp_path / 'o')))


def test_corrupt_checkpoint_is_an_error_and_stays_untouched(tiny_run, tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    garbage = os.urandom(1000)
    (out / 'ckpt.pt').write_bytes(garbage)
    with pytest.raises(ConfigError, match='corrupt'):
        tiny_run('run', init_from='auto')
    assert (out / 'ckpt.pt').read_bytes() == garbage


def test_scratch_never_overwrites_a_checkpoint(tiny_run, tmp_path):
    tiny_run('run', max_iters=2)
    before = (tmp_path / 'run' / 'ckpt.pt').read_bytes()
    with pytest.raises(ConfigError, match="init_from='scratch' would overwrite"):
        tiny_run('run', max_iters=4, init_from='scratch')
    assert (tmp_path / 'run' / 'ckpt.pt').read_bytes() == before


def test_checkpoint_of_another_model_shape_is_an_error(tiny_run, tmp_path):
    tiny_run('run', max_iters=2)
    with pytest.raises(ConfigError, match='another shape.*n_layer'):
        tiny_run('run', max_iters=4, init_from='auto', n_layer=3)


def test_the_command_line_prints_one_clear_error(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(REPO, 'train.py'), '--n_layer=four'],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --n_layer=four: n_layer must be int, got 'four' (str)"
