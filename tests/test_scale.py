"""Scale: FSDP2 sharding (distributed.shard), activation checkpointing, sharded checkpoints (components/distributed.py), and
torchrun restarting killed workers. FSDP runs on the CPU here, over gloo, with a CPU device mesh."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.tensor import DTensor

from components.checkpoint import FORMAT, find_checkpoint
from components.distributed import check_restarts, check_shared, consolidate, shard
from configurator import ConfigError, TrainConfig, changes, check_config, load_config, model_config
from conftest import ENV, REPO, TINY, Run, max_diff, read_log, run_train, train_cmd, trained
from model import GPT, GPTConfig, padded_vocab
from components.runtime import micro_steps, optimizer_step
from teacher import load_teacher
from test_let import LET
from test_train import TORCHRUN

# torchrun restarting workers, as docs/scale.md says to start it (distributed.check_restarts says why)
RESTARTS = TORCHRUN + ('--max-restarts=1',)
RESTART_ENV = dict(ENV, TORCH_DISABLE_SHARE_RDZV_TCP_STORE='1')
SMALL = dict(block_size=32, vocab_size=256, n_layer=2, n_head=2, n_embd=32, dropout=0.1)


# ------------------------------------------------------------------ the sharded student trains as one process

def adamw_worker(rank, world, tmp, checkpointing):
    """Three AdamW steps on 2 micro-batches of 4 sequences: micro-batch m is computed by rank m % world.
    Writes the final weights, whole, to tmp/weights-<world>.pt."""
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{tmp}/store-{world}', rank=rank, world_size=world)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL))
    model.activation_checkpointing = checkpointing
    if world > 1:
        model = shard(model, torch.device('cpu'), world, 'float32')
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, fused=True)  # train.py's optimizer
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    data = torch.randint(0, 256, (3, 2, 4, 33), generator=torch.Generator().manual_seed(1))
    accum = 2 // world
    for step in range(3):
        for m in range(rank, 2, world):
            if world > 1:
                model.set_requires_gradient_sync(m + world >= 2)  # the rank's last micro-batch
            torch.manual_seed(10 * step + m)  # dropout: a micro-batch draws the same mask on any rank
            x = data[step, m]
            _, loss = model(x[:, :-1], x[:, 1:])
            (loss / accum).backward()
        optimizer_step(optimizer, scaler, 0.0, loss.detach(), distributed=True)
    weights = {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in model.state_dict().items()}
    if rank == 0:
        torch.save(weights, f'{tmp}/weights-{world}.pt')
    dist.destroy_process_group()


@pytest.mark.parametrize('checkpointing', [False, True], ids=['plain', 'activation_checkpointing'])
def test_fsdp_adamw_steps_on_two_processes_equal_one_process_bit_for_bit(tmp_path, checkpointing):
    """Each rank's micro-batch is computed exactly as one process computes it; FSDP's reduce-scatter averages
    two gradients, (a + b) / 2, which is a/2 + b/2 exactly, and fused AdamW is elementwise: the weights come
    out identical, even when the blocks are recomputed in backward (activation checkpointing) and dropout is
    on."""
    mp.spawn(adamw_worker, args=(1, str(tmp_path), False), nprocs=1)
    mp.spawn(adamw_worker, args=(2, str(tmp_path), checkpointing), nprocs=2)
    one, two = (torch.load(tmp_path / f'weights-{w}.pt') for w in (1, 2))
    assert one.keys() == two.keys()
    assert all(torch.equal(one[k], two[k]) for k in one)


@pytest.mark.parametrize('term', [pytest.param(LET, id='let'),
                                  pytest.param(dict(LET, kd_lambda=1.0, kd_stop=3), id='let+kd')])
def test_fsdp_on_two_processes_matches_one_process_with_twice_the_accumulation(term, shakespeare_byte,
                                                                            teacher_ckpt, tmp_path):
    """train.py with FSDP, AdamW, clipping and 2 micro-steps per rank (gradient sync on the last only), LET on
    for 4 of the 6 steps (and distillation for 3). The projector is not sharded: its gradients are averaged by
    hand."""
    cfg = dict(TINY, **term, dataset=shakespeare_byte, teacher=teacher_ckpt, max_iters=6, batch_size=4,
               gradient_accumulation_steps=4, grad_clip=0.5)
    fsdp = trained(tmp_path / 'fsdp', run_train(dict(cfg, out_dir=str(tmp_path / 'fsdp'), data_parallel='fsdp'),
                                                launcher=TORCHRUN))
    single = trained(tmp_path / 'single', run_train(dict(cfg, out_dir=str(tmp_path / 'single'))))
    # float sums in another order, which AdamW's division by sqrt(v) can magnify: 1e-5, as for DDP
    assert max_diff(fsdp.params(), single.params()) < 1e-5
    assert any(k.startswith('projectors.') for k in fsdp.params())
    assert [r['lambda'] for r in fsdp.train_log()][:5] == [r['lambda'] for r in single.train_log()][:5]
    assert fsdp.records[-1]['val_loss'] == pytest.approx(single.records[-1]['val_loss'], abs=1e-5)

    # the sharded checkpoint as one plain file, which the teacher loader (and so sample.py) reads as it is
    done = subprocess.run([sys.executable, '-m', 'components.distributed', 'consolidate', fsdp.out_dir],
                          capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    loaded = load_teacher(os.path.join(fsdp.out_dir, 'model.pt'))
    assert loaded.tokenizer == 'byte'
    assert max_diff(loaded.model.state_dict(),
                    {k: v for k, v in fsdp.params().items() if not k.startswith('projectors.')}) == 0.0


def test_under_fsdp_every_rank_skips_the_same_non_finite_steps_and_none_hangs(shakespeare_byte, tmp_path):
    """The gradient norm of sharded gradients is summed across ranks (parallel.grad_norm): every rank sees the
    same non-finite norm, skips the same steps and stops at the same one."""
    cfg = dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / 'fsdp'), data_parallel='fsdp',
               learning_rate=1e30, min_lr=1e30, warmup_iters=0, max_nonfinite_steps=2, max_iters=20,
               gradient_accumulation_steps=2)
    done = run_train(cfg, launcher=TORCHRUN, timeout=180)
    assert done.returncode != 0
    assert done.stderr.count('2 non-finite steps in a row at iteration 2') == 2  # both ranks, same step


def test_fsdp_with_a_learned_projector_trains_and_resumes_exactly_with_fused_adamw(shakespeare_byte, teacher_ckpt,
                                                                                     tmp_path):
    """The projector is sharded like the student (distributed.shard), so fused AdamW, which every device runs here
    as CUDA does and which cannot mix DTensors with plain tensors, steps them together. A run stopped at step 4,
    inside LET, and resumed ends with the weights of the run that never stopped."""
    cfg = dict(TINY, **dict(LET, let_stop=6), dataset=shakespeare_byte, teacher=teacher_ckpt, max_iters=8,
               data_parallel='fsdp', gradient_accumulation_steps=2, init_from='auto')
    whole = trained(tmp_path / 'whole', run_train(dict(cfg, out_dir=str(tmp_path / 'whole')), launcher=TORCHRUN))
    trained(tmp_path / 'split', run_train(dict(cfg, out_dir=str(tmp_path / 'split'), max_iters=4), launcher=TORCHRUN))
    split = trained(tmp_path / 'split', run_train(dict(cfg, out_dir=str(tmp_path / 'split')), launcher=TORCHRUN))
    assert 'resuming from' in split.output and 'S_stop reached' in split.output
    assert [r['lm_loss'] for r in split.train_log()] == [r['lm_loss'] for r in whole.train_log()]
    assert max_diff(split.params(), whole.params()) == 0.0
    assert any(k.startswith('projectors.') for k in whole.params())


def test_compiled_fsdp_trains_as_eager_fsdp(shakespeare_byte, tmp_path):
    """Under FSDP each block is compiled on its own (train.py), so FSDP's gathers and scatters stay between
    compiled blocks, where they can overlap with them. Inductor on the CPU, 2 processes, 2 micro-steps each:
    the losses of eager FSDP, to float rounding."""
    cfg = dict(TINY, dataset=shakespeare_byte, data_parallel='fsdp', max_iters=3, eval_interval=3,
               gradient_accumulation_steps=4)
    runs = {c: trained(tmp_path / str(c), run_train(dict(cfg, out_dir=str(tmp_path / str(c)), compile=c),
                                                    launcher=TORCHRUN, timeout=600)) for c in (False, True)}
    assert 'compiling the blocks' in runs[True].output
    eager, compiled = ([r['lm_loss'] for r in runs[c].train_log()] for c in (False, True))
    assert compiled == pytest.approx(eager, abs=1e-5)
    assert max_diff(runs[True].params(), runs[False].params()) < 1e-5


def test_the_optimizer_is_fused_adamw_on_the_cpu_too():
    """What CUDA runs (one kernel for all parameters, and the only AdamW that takes a found_inf flag)."""
    optimizer = GPT(GPTConfig(**SMALL)).configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults['fused']


def meta_init_worker(rank, world, tmp, settings):
    """A student built on the meta device, sharded across world ranks, then drawn: its whole weights to tmp."""
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{tmp}/store', rank=rank, world_size=world)
    with torch.device('meta'):
        model = GPT(GPTConfig(**settings))
    model = shard(model, torch.device('cpu'), world, 'float32')
    model.to_empty(device='cpu')
    model.init_weights(torch.Generator().manual_seed(7))
    weights = {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in model.state_dict().items()}
    if rank == 0:
        torch.save({'weights': weights, 'tied': model.lm_head.weight is model.transformer.wte.weight,
                    'rope': [model.rope_cos, model.rope_sin] if settings.get('pos') == 'rope' else None},
                   f'{tmp}/sharded.pt')
    dist.destroy_process_group()


LLAMA = dict(SMALL, norm='rmsnorm', mlp='swiglu', pos='rope', n_kv_head=1, bias=False, tie_embeddings=False)


@pytest.mark.parametrize('settings', [SMALL, LLAMA], ids=['gpt2-tied', 'llama-rope'])
def test_a_student_drawn_after_sharding_on_the_meta_device_has_the_weights_of_one_drawn_whole(tmp_path, settings):
    """train.py under FSDP never builds the whole student: each rank allocates its slices and draws them
    (GPT.init_weights draws each parameter whole on the CPU, keeps the rank's slice). The result is exactly the
    student one process builds with the same seed, the tied head still tied and the rotary tables computed."""
    mp.spawn(meta_init_worker, args=(2, str(tmp_path), settings), nprocs=2)
    sharded = torch.load(tmp_path / 'sharded.pt')
    with torch.device('meta'):  # what train.py does without FSDP
        whole = GPT(GPTConfig(**settings))
    whole.to_empty(device='cpu')
    whole.init_weights(torch.Generator().manual_seed(7))
    assert sharded['tied'] == settings.get('tie_embeddings', True)
    assert (whole.lm_head.weight is whole.transformer.wte.weight) == sharded['tied']
    assert max_diff(sharded['weights'], whole.state_dict()) == 0.0
    if sharded['rope']:
        assert torch.equal(sharded['rope'][0], whole.rope_cos) and torch.equal(sharded['rope'][1], whole.rope_sin)
        assert torch.equal(whole.rope_cos, GPT(GPTConfig(**settings)).rope_cos)  # the tables a plain build has


def shared_worker(rank, world, tmp, same):
    dist.init_process_group('gloo', init_method=f'file://{tmp}/store', rank=rank, world_size=world)
    out_dir = os.path.join(tmp, 'out' if same else f'node{rank}')  # two nodes' local disks, or one share
    os.makedirs(out_dir, exist_ok=True)
    try:
        check_shared(out_dir, rank, world)
        result = 'ok'
    except ConfigError as e:
        result = str(e)
    with open(os.path.join(tmp, f'result{rank}'), 'w') as f:
        f.write(result)
    dist.destroy_process_group()


def test_an_out_dir_that_is_not_one_folder_for_all_ranks_is_an_error_on_every_rank(tmp_path):
    """Checkpoints need out_dir on a filesystem every node shares: on node-local disks no whole checkpoint
    exists anywhere (FSDP) or ranks disagree on resuming (DDP). Checked before anything is computed."""
    (tmp_path / 'local').mkdir()
    mp.spawn(shared_worker, args=(2, str(tmp_path / 'local'), False), nprocs=2)
    results = [(tmp_path / 'local' / f'result{r}').read_text() for r in (0, 1)]
    assert all(re.search(r"is not one folder for all ranks: rank 1 on \S+ cannot see the file rank 0 wrote .*"
                         r"a filesystem every node shares", r) for r in results), results
    (tmp_path / 'shared').mkdir()
    mp.spawn(shared_worker, args=(2, str(tmp_path / 'shared'), True), nprocs=2)
    assert [(tmp_path / 'shared' / f'result{r}').read_text() for r in (0, 1)] == ['ok', 'ok']
    assert os.listdir(tmp_path / 'shared' / 'out') == []  # the probe is gone


# ------------------------------------------------------------------ sharded checkpoints

def workers(agent_pid):
    """{rank: pid} of the workers a torchrun agent started (each in a session of its own, so killing the
    agent's process group would leave them running)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/stat') as f:
                parent = int(f.read().rsplit(')', 1)[1].split()[1])
            with open(f'/proc/{pid}/environ', 'rb') as f:
                environ = f.read().split(b'\0')
        except OSError:
            continue  # gone meanwhile
        rank = [v[5:] for v in environ if v.startswith(b'RANK=')]
        if parent == agent_pid and rank:
            found[int(rank[0])] = int(pid)
    return found


def dead(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'  # a zombie: killed, not yet reaped
    except OSError:
        return True


SHARDED_WRITER = """
import os, signal, sys, torch, torch.distributed as dist
sys.path.insert(0, {repo!r})
import components.distributed as distributed
from model import GPT, GPTConfig
dist.init_process_group('gloo')
model = distributed.shard(GPT(GPTConfig(block_size=32, vocab_size=256, n_layer=2, n_head=4, n_embd=512)), torch.device('cpu'),
              2, 'float32')
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
rank, replace = dist.get_rank(), os.replace


def freeze(*args):
    open({path!r} + '-frozen-{first}', 'w').close()  # tells the test to kill the job now, inside this save
    signal.pause()


i = {first}
while True:  # rewrite the checkpoint forever, every weight of version i equal to i, until killed
    i += 1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(i)
    if i == {first} + 2:  # version first + 1 is whole on disk; this one stops inside its save, at {where!r}
        if {where!r} == 'shards' and rank == 1:  # rank 1 inside dcp.save, its first file written, not synced
            os.fsync = freeze
        if {where!r} == 'meta' and rank == 0:  # every shard written, meta.pt not yet
            distributed.save_checkpoint = freeze
        if {where!r} == 'renames' and rank == 0:  # the last checkpoint moved to path.old, path.tmp not yet in place
            os.replace = lambda src, dst: freeze() if dst == {path!r} else replace(src, dst)
    distributed.save_sharded({path!r}, {{'format': {fmt!r}, 'iter_num': i}}, {{'student': model}}, optimizer)
"""


def test_a_kill_during_a_sharded_save_leaves_a_whole_checkpoint(tmp_path):
    """Both ranks and torchrun are killed (SIGKILL) inside a sharded save, at points the writers choose and
    announce: one rank's shards half written, every shard but no meta.pt, between the two renames. The
    checkpoint found afterwards is always the version before, whole, shards and meta.pt alike."""
    path = str(tmp_path / 'ckpt')
    for job_number, where in enumerate(('shards', 'meta', 'renames', 'shards')):
        first = 1000 * job_number  # this job's versions: first + 1, first + 2, ...
        script = tmp_path / f'writer{job_number}.py'
        script.write_text(SHARDED_WRITER.format(repo=REPO, path=path, fmt=FORMAT, first=first, where=where))
        job = subprocess.Popen([sys.executable, *TORCHRUN, str(script)], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        give_up = time.monotonic() + 300  # a failure timeout only: the kill waits for the writers' word
        while not os.path.exists(f'{path}-frozen-{first}'):
            assert job.poll() is None and time.monotonic() < give_up, f"the writers never reached {where!r}"
            time.sleep(0.02)
        ranks = workers(job.pid)
        for pid in (job.pid, *ranks.values()):  # the agent, then both workers: nobody stops gracefully
            os.kill(pid, signal.SIGKILL)
        job.wait()
        assert len(ranks) == 2
        while not all(map(dead, ranks.values())):
            time.sleep(0.01)
        assert os.path.exists(path + ('.old' if where == 'renames' else '.tmp'))  # killed inside the save
        ckpt = consolidate(find_checkpoint(path))
        assert ckpt['iter_num'] == first + 1  # the version before, this job's
        assert all(torch.all(w == ckpt['iter_num']) for w in ckpt['model'].values())


# ------------------------------------------------------------------ torchrun restarts a killed worker

@pytest.mark.parametrize('data_parallel', ['ddp', 'fsdp'])
def test_a_worker_killed_under_torchrun_is_restarted_and_the_run_ends_with_the_uninterrupted_losses(
        data_parallel, shakespeare_byte, tmp_path):
    """TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --max-restarts=1: rank 1 is killed (SIGKILL, tests/kill_at.py)
    inside step 5, after the checkpoint of step 4; torchrun stops rank 0, starts both again, they resume from the
    checkpoint and the log ends with exactly the losses of a run that was never interrupted."""
    cfg = dict(TINY, dataset=shakespeare_byte, data_parallel=data_parallel, max_iters=12, dropout=0.1,
               gradient_accumulation_steps=2, init_from='auto')
    whole = trained(tmp_path / 'whole', run_train(dict(cfg, out_dir=str(tmp_path / 'whole')), launcher=TORCHRUN))
    out = tmp_path / 'killed'
    cmd = train_cmd(dict(cfg, out_dir=str(out)), launcher=RESTARTS)
    at = cmd.index(os.path.join(REPO, 'train.py'))
    cmd[at:at] = [os.path.join(REPO, 'tests', 'kill_at.py'), 'step', '5']  # torchrun ... kill_at.py step 5 train.py
    job = subprocess.run(cmd, env=dict(RESTART_ENV, KILL_RANK='1'), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=300)
    output = job.stdout
    assert job.returncode == 0, output[-3000:]
    assert 'resuming from' in output
    assert [r['iter'] for r in read_log(out, 'train')] == list(range(1, 13))
    assert [r['lm_loss'] for r in read_log(out, 'train')] == [r['lm_loss'] for r in whole.train_log()]
    assert max_diff(Run(str(out)).params(), whole.params()) == 0.0


def test_torchrun_restarts_with_its_shared_store_are_refused_with_the_fix(monkeypatch):
    """What torchrun --max-restarts=1 sets in its workers' environment (local_elastic_agent.py), unless it was
    started with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1."""
    monkeypatch.setenv('TORCHELASTIC_MAX_RESTARTS', '1')
    monkeypatch.setenv('TORCHELASTIC_USE_AGENT_STORE', 'True')
    with pytest.raises(ConfigError, match='Start torchrun as TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun'):
        check_restarts()
    monkeypatch.setenv('TORCHELASTIC_USE_AGENT_STORE', 'False')  # what the documented command gives
    check_restarts()
    monkeypatch.setenv('TORCHELASTIC_USE_AGENT_STORE', 'True')
    monkeypatch.setenv('TORCHELASTIC_MAX_RESTARTS', '0')  # no restart, no stale store
    check_restarts()


# ------------------------------------------------------------------ the 7B configs

def test_the_7b_configs_are_a_7_5b_student_sharded_32_ways_and_differ_only_in_let():
    config = os.path.join(REPO, 'config')
    let, base = (load_config(TrainConfig, [os.path.join(config, f)])
                 for f in ('let_pile_7b.py', 'baseline_pile_7b.py'))
    check_config(let)
    check_config(base)
    with torch.device('meta'):  # the shapes, no memory
        student = GPT(model_config(let, padded_vocab(128_256)))  # Llama 3's vocabulary
    assert 7.5e9 < student.get_num_params() < 7.55e9
    assert 16 * student.get_num_params() / 32 < 4e9  # fp32 weights, gradients, AdamW: 3.8 GB per GPU
    assert let.data_parallel == 'fsdp' and let.activation_checkpointing
    assert let.batch_size * micro_steps(let, 32) * 32 * let.block_size == 1_048_576  # tokens per step
    assert 0 <= let.let_layers[0] < let.n_layer // 4  # an early block
    assert set(changes(os.path.join(config, 'let_pile_7b.py'), os.path.join(config, 'baseline_pile_7b.py'))) == {
        'teacher', 'let_lambda', 'let_loss', 'let_proj', 'let_layers', 'let_stop'}


# ------------------------------------------------------------------ bad input, one clear error

def test_fsdp_without_torchrun_is_an_error_that_says_how_to_launch(tiny_error):
    assert "launch with torchrun (--nproc_per_node=1" in tiny_error(data_parallel='fsdp')
    assert "data_parallel='zero': use 'ddp' or 'fsdp'" in tiny_error(data_parallel='zero')


def test_a_sharded_checkpoint_is_not_resumed_as_a_plain_one(tiny_error, tmp_path):
    (tmp_path / 'run' / 'ckpt').mkdir(parents=True)  # what an FSDP run leaves: a folder of shards
    assert re.search(r"holds a checkpoint of an FSDP run .*resume it with data_parallel='fsdp'",
                     tiny_error('run', init_from='auto'))
