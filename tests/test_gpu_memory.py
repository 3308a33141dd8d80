"""dev/gpu_memory.py tells the truth: on a small model its fake tensors give exactly the figures of real CPU tensors
under the same tracker (one process standing in for a DDP rank; FSDP on 2 gloo processes against the fake group of
2), the kinds it registers by hand (the teacher, DDP's buckets, FSDP's gradients kept between micro-steps) are what
they say, the torch internals it relies on are pinned, and every GPU config of config/ is in its list.

Run as a script, `python tests/test_gpu_memory.py fake` (or `real`, under torchrun) prints the FSDP simulation of
the small model as JSON: the FSDP test runs both in fresh processes, because DTensor caches its sharding
propagation per process (a run after another would not show the fake mode's full-size shape computations)."""

import glob
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ENV, REPO
from configurator import TrainConfig, load_config
from components.runtime import micro_steps
from model import GPT, GPTConfig
import dev.gpu_memory as gm

VOCAB = 512
# LLaMA-style with grouped key/value heads, an untied head, activation checkpointing and a learned projector P
TINY = dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, mlp_hidden=160, block_size=64, batch_size=2,
            gradient_accumulation_steps=6, norm='rmsnorm', mlp='swiglu', pos='rope', bias=False, tie_embeddings=False,
            dtype='bfloat16', teacher='tiny', let_lambda=0.1, let_proj='linear', let_layers=(0,),
            activation_checkpointing=True)
TEACHER = GPTConfig(block_size=64, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=48, mlp_hidden=128, bias=False,
                    norm='rmsnorm', mlp='swiglu', pos='rope')


def simulate(fake=True, nproc=2, **settings):
    return gm.simulate(load_config(TrainConfig, [], {**TINY, **settings}), nproc, VOCAB, TEACHER, fake=fake)[0]


@pytest.fixture(scope='module')
def ddp_rank():
    """The small model's DDP rank on fake tensors (2 processes: with DDP's buckets)."""
    return simulate()


def test_torch_internals_are_pinned(monkeypatch):
    gm.check_torch()  # every private name the simulation uses exists in this torch
    monkeypatch.delattr(gm._sharding_prop, 'detect_fake_mode')
    with pytest.raises(RuntimeError, match='detect_fake_mode'):
        gm.check_torch()  # a torch that moved one fails loudly, naming it


def test_fake_tensors_hold_what_real_tensors_hold_in_one_process(ddp_rank):
    """The DDP rank as one process (MemTracker), DDP's buckets included: every phase, kind and stage alike."""
    assert set(ddp_rank) == {'step 1', 'with teacher', 'after S_stop'}
    assert ddp_rank == simulate(fake=False)


def test_fake_tensors_hold_what_real_tensors_hold_under_fsdp():
    """FSDPMemTracker on rank 0: a fake group of 2 in one process against 2 gloo processes with real tensors. With
    the paper's parameter-free projector: a learned one, sharded on its own, has its gathered bf16 weight freed a
    few operations later under gloo than under the fake group (the same peaks; one stage's maximum differs by
    that weight, 6 KB here)."""
    script = [os.path.join(REPO, 'tests', 'test_gpu_memory.py')]
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2']
    runs = [subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
            for cmd in ([sys.executable, *script, 'fake'], [*torchrun, *script, 'real'])]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    fake, real = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    assert fake['with teacher']['kinds']['Sharded Param'] > 0 and fake['with teacher']['kinds']['Unsharded Grad'] > 0
    assert fake == real


def test_fsdp_keeps_the_whole_student_in_fp32_between_micro_steps():
    """bf16 compute with fp32 reduction: from the second micro-step on, each rank holds 4 bytes per parameter of the
    whole student (FSDP's accumulated gradients, relabelled from the tracker's temporaries); 1/2 of the fp32
    weights and of AdamW's two moments (and its step counts, one fp32 scalar per parameter tensor)."""
    with torch.device('meta'):
        params = list(GPT(gm.model_config(load_config(TrainConfig, [], TINY), VOCAB)).parameters())
    n = sum(p.numel() for p in params)
    peaks = gm.simulate(load_config(TrainConfig, [], {**TINY, 'data_parallel': 'fsdp', 'let_proj': 'interp'}), 2,
                        VOCAB, TEACHER)[0]
    peak = peaks['with teacher']
    assert 'micro-step 1 ' not in peak['where']
    assert peak['kinds']['Unsharded Grad'] == 4 * n
    assert peak['kinds']['Sharded Param'] == 4 * n // 2
    assert peak['kinds']['OptState'] == 2 * 4 * n // 2 + 4 * len(params)


def test_the_teacher_is_counted_until_s_stop_and_ddp_buckets_throughout(ddp_rank):
    peaks = ddp_rank
    with torch.device('meta'):
        teacher = GPT(TEACHER).to(torch.bfloat16)
    weights = sum(t.numel() * t.element_size() for t in [*teacher.parameters(), *teacher.buffers()])
    with_teacher, after = peaks['with teacher'], peaks['after S_stop']
    assert with_teacher['kinds'][gm.TEACHER] == weights and gm.TEACHER not in after['kinds']
    assert after['bytes'] <= with_teacher['bytes'] - weights
    with torch.device('meta'):
        n = GPT(gm.model_config(load_config(TrainConfig, [], TINY), VOCAB)).get_num_params()
    assert with_teacher['kinds'][gm.BUCKETS] == after['kinds'][gm.BUCKETS] == 4 * n  # fp32, all trained weights
    assert gm.BUCKETS not in simulate(nproc=1)['with teacher']['kinds']  # one process: no DDP


def test_verdict_adds_the_allowance_and_keeps_a_tenth_of_the_card():
    need, limit, fits = gm.verdict(60e9, 80)
    assert need == pytest.approx(60e9 * (1 + gm.FRAGMENTATION) + gm.ALLOWANCE_GB * 1e9) and limit == 72e9 and fits
    assert not gm.verdict(63e9, 80)[2]


def test_every_gpu_config_is_checked_and_keeps_its_tokens_per_step():
    """The configs that name GPUs or torchrun are GPU_CONFIGS; each one's runs have a known teacher shape and
    vocabulary; the Pile configs keep 1,048,576 tokens per step, divided evenly over their GPUs."""
    named = {os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'config', '*.py'))
             if any(word in open(p).read() for word in ('GPU', 'torchrun'))}
    assert named == set(gm.GPU_CONFIGS)
    for path, (nproc, _) in gm.GPU_CONFIGS.items():
        for _, cfg in gm.runs_of(os.path.join(REPO, path), []):
            assert gm.data_vocab(cfg.dataset) > 0
            if cfg.teacher:
                assert cfg.teacher in gm.TEACHERS
            if 'pile' in path:
                per_process = micro_steps(cfg, nproc)
                assert nproc * per_process * cfg.batch_size * cfg.block_size == 1_048_576


if __name__ == '__main__':  # one FSDP simulation of the small model, as JSON (the FSDP test's two sides)
    import torch.distributed as dist
    fake = sys.argv[1] == 'fake'
    if not fake:
        dist.init_process_group('gloo')
    peaks = simulate(fake=fake, data_parallel='fsdp', let_proj='interp')
    if fake or dist.get_rank() == 0:
        print(json.dumps(peaks))
    if not fake:
        dist.destroy_process_group()
