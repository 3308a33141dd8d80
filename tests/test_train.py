"""train.py, run as the script it is: the loop, its data order, accumulation, resume, DDP, and one clear error
for each bad input."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from configurator import ConfigError, TrainConfig, check_config
from conftest import ENV, REPO, TINY, TRAIN, max_diff, read_log, run_train, train_cmd, trained
from data.common import TokenWindows


def test_a_few_dozen_steps_reduce_the_loss_on_real_data(tiny_run):
    run = tiny_run(max_iters=40, eval_interval=40, lr_decay_iters=40)
    first, last = run.records[0], run.records[-1]
    assert (first['iter'], last['iter']) == (0, 40)
    assert last['val_loss'] < first['val_loss'] - 1.0  # from about ln(256) = 5.5 towards character statistics


def test_two_micro_batches_of_4_give_the_same_update_as_one_batch_of_8(tiny_run):
    a = tiny_run('accum', batch_size=4, gradient_accumulation_steps=2, max_iters=3)
    b = tiny_run('batch', batch_size=8, gradient_accumulation_steps=1, max_iters=3)
    # the same 8 sequences per step; only float summation order differs (fp32)
    assert max_diff(a.params(), b.params()) < 1e-6


def test_resume_continues_exactly_where_the_run_stopped(tiny_run):
    common = dict(max_iters=12, dropout=0.1)  # dropout: the random streams must continue exactly too
    whole = tiny_run('whole', **common)
    tiny_run('split', **dict(common, max_iters=6))  # stops at step 6 with its checkpoint
    split = tiny_run('split', **dict(common, init_from='auto'))
    assert 'resuming from' in split.output
    assert [r['iter'] for r in split.train_log()] == list(range(1, 13))  # the log continues without duplicates
    assert [r['lm_loss'] for r in split.train_log()[6:]] == [r['lm_loss'] for r in whole.train_log()[6:]]
    split_evals = {r['iter']: r['val_loss'] for r in split.records}
    whole_evals = {r['iter']: r['val_loss'] for r in whole.records}
    assert sorted(split_evals) == [0, 4, 6, 8, 12]  # the first segment also evaluated at its end, step 6
    assert all(split_evals[i] == whole_evals[i] for i in (8, 12))
    assert max_diff(split.params(), whole.params()) == 0.0


def test_ranks_read_disjoint_windows_that_together_are_the_single_process_batch(shakespeare_byte):
    windows = TokenWindows(os.path.join(shakespeare_byte, 'train.bin'), 32, seed=1)
    B, world, accum, G = 4, 2, 2, 16  # global batch G = B * accum * world
    for step in range(3):
        per_rank = [[w for m in range(accum) for w in windows.train_windows(step * G + (m * world + r) * B, B)]
                    for r in range(world)]
        assert not set(per_rank[0]) & set(per_rank[1])
        assert sorted(per_rank[0] + per_rank[1]) == sorted(windows.train_windows(step * G, G))
    # within an epoch no window repeats
    assert len(set(windows.train_windows(0, 1000))) == 1000
    # a batch is two contiguous arrays: pinned and sent to a GPU in one piece, y the tokens after x's
    x, y = windows.read(windows.train_windows(0, B))
    assert x.flags['C_CONTIGUOUS'] and y.flags['C_CONTIGUOUS'] and (x[:, 1:] == y[:, :-1]).all()


TORCHRUN = ('-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2')


def test_ddp_on_two_cpu_processes_matches_one_process_with_twice_the_accumulation(shakespeare_byte, tmp_path):
    cfg = dict(TINY, dataset=shakespeare_byte, max_iters=4, batch_size=4, gradient_accumulation_steps=2)
    done = run_train(dict(cfg, out_dir=str(tmp_path / 'ddp')), launcher=TORCHRUN)
    ddp = trained(tmp_path / 'ddp', done)
    single = trained(tmp_path / 'single', run_train(dict(cfg, out_dir=str(tmp_path / 'single'))))
    # gloo averages across ranks in another order than one process sums micro-batches: fp32 rounding only
    assert max_diff(ddp.params(), single.params()) < 1e-5
    # both evaluate the same windows: the eval set does not depend on the number of processes
    assert ddp.records[-1]['val_loss'] == pytest.approx(single.records[-1]['val_loss'], abs=1e-5)
    assert 'FutureWarning' not in done.stderr  # torch 2.13 deprecated DDP's broadcast_buffers


# train.py under torchrun, with torch.distributed.destroy_process_group reporting the DDP wrappers still alive
DESTROY_WATCH = """
import gc, runpy, sys
sys.path.insert(0, {repo!r})
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
destroy = dist.destroy_process_group


def watched(*args, **kwargs):
    alive = sum(isinstance(o, DDP) for o in gc.get_objects())
    print(f'DDP wrappers alive at destroy_process_group: {{alive}}', flush=True)
    return destroy(*args, **kwargs)


dist.destroy_process_group = watched
sys.argv = [{train!r}, *sys.argv[1:]]
runpy.run_path({train!r}, run_name='__main__')
"""


def test_ddp_wrappers_are_freed_before_the_process_group_is_destroyed(shakespeare_byte, teacher_ckpt, tmp_path):
    """A DDP wrapper freed after destroy_process_group destroys the gloo group itself, holding the GIL while a
    gloo thread may wait for it to free a finished collective's tensors: the run hangs at exit, now and then
    (pytorch/pytorch#56297). So none may be left when train.py destroys the group: the student's and LET's
    learned projector's alike."""
    script = tmp_path / 'watch.py'
    script.write_text(DESTROY_WATCH.format(repo=REPO, train=TRAIN))
    settings = dict(TINY, dataset=shakespeare_byte, max_iters=2, eval_interval=2, gradient_accumulation_steps=2,
                    out_dir=str(tmp_path / 'ddp'), teacher=teacher_ckpt, let_lambda=1.0, let_stop=2,
                    let_proj='linear')  # LET's learned P: wrapped by DDP like the student
    done = subprocess.run([sys.executable, *TORCHRUN, str(script), *train_cmd(settings)[2:]], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.findall(r'DDP wrappers alive at destroy_process_group: (\d+)', done.stdout) == ['0', '0']


def test_mfu_counts_the_flops_of_one_process_over_one_devices_peak(shakespeare_byte, tmp_path):
    """Each of 2 processes computes half of the step's tokens: its FLOPs (what MFU divides by one device's peak)
    are half of one process's doing the whole step, as nanoGPT's estimate_mfu counts."""
    cfg = dict(TINY, dataset=shakespeare_byte, max_iters=1, batch_size=4, gradient_accumulation_steps=2)
    ddp = trained(tmp_path / 'ddp', run_train(dict(cfg, out_dir=str(tmp_path / 'ddp')), launcher=TORCHRUN))
    single = trained(tmp_path / 'single', run_train(dict(cfg, out_dir=str(tmp_path / 'single'))))
    assert 2 * ddp.train_log()[0]['flops_student'] == single.train_log()[0]['flops_student']


def test_the_teachers_flops_follow_the_layer_it_stops_at_and_kd_runs_all_of_it():
    """step_flops' teacher figures, what 'mfu with teacher' adds: LET with the teacher's block 0 runs one of its
    two blocks; LET with its final state runs both; KD runs both and the head, whatever the layer."""
    from model import GPT, GPTConfig
    from teacher import Teacher
    from train import step_flops
    student = GPT(GPTConfig(block_size=16, vocab_size=64, n_layer=3, n_head=4, n_embd=32))
    net = GPT(GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=16))
    per_token = lambda **kw: net.forward_flops_per_token(16, **kw) * 100
    for layer, blocks in ((-1, 2), (0, 1), (1, 2)):
        _, hidden, logits = step_flops(student, Teacher(net, 'byte', 'tiny', layer=layer), 16, 100)
        assert hidden == per_token(head=False, blocks=blocks)
        assert logits == per_token()
    assert step_flops(student, Teacher(net, 'byte', 'tiny', layer=0), 16, 100)[1] < \
        step_flops(student, Teacher(net, 'byte', 'tiny'), 16, 100)[1]


@pytest.mark.parametrize('first, then', [('float32', 'float16'), ('float16', 'float32')])
def test_a_run_resumes_in_another_dtype_with_or_without_a_loss_scaler(tiny_run, first, then):
    """A float16 run keeps a loss scaler, which a run in another dtype saves empty: resuming across the two
    starts a new loss scale, or drops the one that is no longer needed, and says so."""
    tiny_run('run', dtype=first, max_iters=4)
    resumed = tiny_run('run', dtype=then, init_from='auto')
    assert [r['iter'] for r in resumed.train_log()] == list(range(1, 9))
    assert ('its loss scale starts anew' if then == 'float16' else 'its loss scale is dropped') in resumed.output


def test_an_accumulation_that_does_not_split_across_processes_says_what_to_pass(shakespeare_byte, tmp_path):
    done = run_train(dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / 'o'), batch_size=16,
                          gradient_accumulation_steps=1), launcher=TORCHRUN)
    assert done.returncode != 0
    assert ("gradient_accumulation_steps=1 counts the micro-batches of all 2 processes together, so it must be a "
            "multiple of 2: pass --batch_size=8 --gradient_accumulation_steps=2 (the same 512 tokens per step), or "
            "--gradient_accumulation_steps=2 (more tokens per step)") in done.stderr


# ------------------------------------------------------------------ bad input: one clear error, nothing lost

@pytest.mark.fast
def test_unknown_setting_is_an_error_with_a_suggestion(tiny_error):
    assert re.search("unknown setting 'learning_rat'.*did you mean 'learning_rate'", tiny_error(learning_rat=0.1))


def test_a_value_of_the_wrong_type_is_an_error(tiny_error):
    assert tiny_error(max_iters=1.5) == "error: --max_iters=1.5: max_iters must be int, got 1.5 (float)"
    assert tiny_error(n_layer='four') == "error: --n_layer=four: n_layer must be int, got 'four' (str)"


def test_config_files_are_checked_too(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text("n_layers = 4\n")
    done = subprocess.run([sys.executable, TRAIN, str(bad)], capture_output=True, text=True, env=ENV)
    assert done.returncode == 2
    assert re.search(r"bad.py: unknown setting 'n_layers'.*'n_layer'", done.stderr)


def test_a_device_torch_cannot_use_is_an_error_that_says_why(tiny_error):
    import torch
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    assert re.search(r"device='cuda', but .*use --device=cpu", tiny_error(device='cuda'))
    assert "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'" in tiny_error(device='tpu')


def test_missing_dataset_names_the_prepare_script(tiny_error, tmp_path):
    assert 'prepare' in tiny_error(dataset=str(tmp_path / 'nothing'))


def copy_dataset(src, dst):
    dst.mkdir()
    for name in ('train.bin', 'val.bin', 'meta.json'):
        (dst / name).write_bytes((open(os.path.join(src, name), 'rb')).read()[:200_000] if name != 'meta.json'
                                 else open(os.path.join(src, name), 'rb').read())
    meta = json.loads((dst / 'meta.json').read_text())
    meta.update(train_tokens=100_000, val_tokens=100_000)
    (dst / 'meta.json').write_text(json.dumps(meta))
    return dst


def test_token_id_outside_the_vocabulary_is_an_error_before_training(shakespeare_byte, tiny_error, tmp_path):
    data = copy_dataset(shakespeare_byte, tmp_path / 'data')
    tokens = np.memmap(data / 'train.bin', dtype=np.uint16, mode='r+')
    tokens[500] = 300  # the byte vocabulary has 256 ids
    tokens.flush()
    del tokens
    assert 'token id 300, outside the vocabulary of 256' in tiny_error('o', dataset=str(data))
    assert not (tmp_path / 'o' / 'ckpt.pt').exists()


def test_truncated_data_file_is_an_error(shakespeare_byte, tiny_error, tmp_path):
    data = copy_dataset(shakespeare_byte, tmp_path / 'data')
    with open(data / 'val.bin', 'r+b') as f:
        f.truncate(99_999)
    assert 'odd number of bytes' in tiny_error(dataset=str(data))
    with open(data / 'val.bin', 'r+b') as f:
        f.truncate(99_998)
    assert 'meta.json says 100000' in tiny_error(dataset=str(data))


def test_corrupt_checkpoint_is_an_error_and_stays_untouched(tiny_error, tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    garbage = bytes([0x80, 118]) + os.urandom(998)  # also what torch warns about (pickle protocol 118) first
    (out / 'ckpt.pt').write_bytes(garbage)
    assert 'corrupt' in tiny_error('run', init_from='auto')
    assert (out / 'ckpt.pt').read_bytes() == garbage


def test_scratch_never_overwrites_a_checkpoint(tiny_run, tiny_error, tmp_path):
    tiny_run('run', max_iters=2)
    before = (tmp_path / 'run' / 'ckpt.pt').read_bytes()
    assert "init_from='scratch' would overwrite" in tiny_error('run', max_iters=4, init_from='scratch')
    assert (tmp_path / 'run' / 'ckpt.pt').read_bytes() == before


def test_checkpoint_of_another_model_shape_is_an_error(tiny_run, tiny_error):
    tiny_run('run', max_iters=2)
    assert re.search('another shape.*n_layer', tiny_error('run', max_iters=4, init_from='auto', n_layer=3))


def test_checkpoints_are_saved_every_checkpoint_interval_th_evaluation_and_at_the_last_step(tiny_run):
    run = tiny_run(max_iters=10, eval_interval=2, checkpoint_interval=2)  # evaluations at 0, 2, 4, 6, 8, 10
    assert re.findall(r'step (\d+): checkpoint saved', run.output) == ['2', '6', '10']
    nano = tiny_run('nano', max_iters=10, eval_interval=2, always_save_checkpoint=False)  # when val improves
    assert re.findall(r'step (\d+): checkpoint saved', nano.output)[-1] == '10'  # and at the end, always


def test_compilation_happens_before_the_first_timed_step_and_s_stop_compiles_nothing(shakespeare_byte,
                                                                                      teacher_ckpt, tmp_path):
    """torch.compile's graphs (student, teacher, evaluation) are built by train.warm_up before the clock starts,
    and the student returns the states after blocks k also after S_stop: the steps, train_time and speedup.py's
    wall-clock figures exclude compilation. Inductor on the CPU; dynamo logs every graph it starts tracing."""
    done = subprocess.run(train_cmd(dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / 'c'), compile=True,
                                         teacher=teacher_ckpt, let_lambda=1.0, let_stop=2, let_proj='linear',
                                         max_iters=4, eval_interval=2)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                          env=dict(ENV, TORCH_LOGS='dynamo'), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    lines = done.stdout.splitlines()
    traced = [i for i, line in enumerate(lines) if 'torchdynamo start tracing' in line]
    first_eval = next(i for i, line in enumerate(lines) if line.startswith('step 0:'))  # before step 1 starts
    assert traced and max(traced) < first_eval, [lines[i][-80:] for i in traced]
    assert 'S_stop reached' in done.stdout


def wandb_history(folder):
    """[(run id, step, {key: value})] from the offline runs wandb wrote under folder, in order. The .wandb file is a
    log of 32 KiB blocks after a 7-byte header; each piece of a record has a 7-byte header (checksum, length,
    kind: 1 whole, 2 first, 3 middle, 4 last) and the records are wandb's protobuf Records."""
    import glob
    import json as json_
    from wandb.proto import wandb_internal_pb2
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, 'wandb', 'offline-run-*', 'run-*.wandb'))):
        data, pos, payload = open(path, 'rb').read(), 7, b''
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
                pos += 32768 - pos % 32768
                continue
            length, kind = int.from_bytes(data[pos + 4:pos + 6], 'little'), data[pos + 6]
            payload, pos = payload + data[pos + 7:pos + 7 + length], pos + 7 + length
            if kind in (1, 4) and payload:
                record = wandb_internal_pb2.Record()
                record.ParseFromString(payload)
                payload = b''
                if record.WhichOneof('record_type') == 'history':
                    items = {i.key or '/'.join(i.nested_key): json_.loads(i.value_json) for i in record.history.item}
                    rows.append((os.path.basename(path)[4:-6], items.pop('_step'), items))
    return rows


def test_wandb_log_sends_the_numbers_of_the_log_and_a_resume_continues_the_same_run(shakespeare_byte, tmp_path):
    """--wandb_log=True (nanoGPT's setting), in wandb's offline mode: the run's history holds log.jsonl's numbers
    at their iterations, and a resumed run logs into the same wandb run."""
    env = dict(ENV, WANDB_MODE='offline', WANDB_DIR=str(tmp_path), WANDB_SILENT='true')
    settings = dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / 'out'), wandb_log=True, init_from='auto')
    for max_iters in (4, 8):  # the second run resumes from the first's checkpoint at step 4
        done = subprocess.run(train_cmd(dict(settings, max_iters=max_iters)), capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    assert 'resuming from' in done.stdout
    rows = wandb_history(tmp_path)
    assert len({run for run, _, _ in rows}) == 1  # one wandb run, continued
    logged = {(step, key): value for _, step, items in rows for key, value in items.items()}
    log = read_log(tmp_path / 'out', 'train')
    assert [r['iter'] for r in log] == list(range(1, 9))
    assert all(logged[(r['iter'], 'train/lm_loss')] == r['lm_loss'] for r in log)
    assert all(logged[(r['iter'], 'eval/val_loss')] == r['val_loss'] for r in read_log(tmp_path / 'out', 'eval'))


def test_wandb_log_without_wandb_is_one_error_naming_the_extra(monkeypatch):
    """Where wandb is not installed (find_spec finds no module of that name), before anything runs."""
    import importlib.util as util
    find_spec = util.find_spec
    monkeypatch.setattr(util, 'find_spec', lambda name, *args: None if name == 'wandb' else find_spec(name, *args))
    with pytest.raises(ConfigError, match=r'wandb_log=True needs wandb: pip install "\.\[wandb\]"'):
        check_config(TrainConfig(wandb_log=True))
