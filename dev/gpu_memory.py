"""A training config's memory per GPU, simulated on the CPU by torch's own accounting, and its FLOPs counted.

    python -m dev.gpu_memory config/let_pile.py [--nproc=8] [--card_gb=80] [--key=value ...]
    python -m dev.gpu_memory --all       # every GPU config of config/, on the processes and card it is made for

--nproc and --card_gb default to the config's entry in GPU_CONFIGS (below), else 1 process and 80 GB.

What runs is this repository's training step as train.py runs it: model.py's GPT built on the meta device, sharded
by distributed.shard (FSDP2) or whole (DDP), allocated and drawn by init_weights, activation checkpointing, the teacher's
forward, LET's loss (and distillation's), backward with gradient accumulation, parallel.optimizer_step (clipping, fused
AdamW). It runs on fake tensors (FakeTensorMode: exact shapes and dtypes, nothing allocated, no arithmetic) on the CPU
with bf16 autocast, as rank 0 of a fake process group of --nproc ranks (collectives return at once), for 2 steps of
up to 3 micro-steps with the teacher (step 2 is the steady state: AdamW's state exists and gradients are kept between
micro-steps), then the teacher is released as at S_stop and one more step runs. torch's memory trackers
(FSDPMemTracker under FSDP, MemTracker otherwise) count every tensor alive after every operation, by kind. Printed
for each phase (step 1, which makes AdamW's state; the steady state; after S_stop): the peak, where it falls, what
holds it, and each stage's maximum (forward, teacher forward, loss, backward, optimizer step).

Added by hand, because the simulation cannot run them: the teacher's weights are registered as their own kind
(frozen and outside any wrapper, the trackers see them only so); DDP's gradient buckets (DDP runs on neither fake
tensors nor the fake group) are a tensor of 4 bytes per trained parameter held throughout, as DDP allocates them at
wrap (gradient_as_bucket_view: the gradients of a micro-step without sync are separate tensors, and the last
micro-step's become views of the buckets, so this overcounts when a process has one micro-step per step); FSDP's
prefetch of the next block's bf16 weights (the CPU has no separate all-gather stream, so the simulation gathers one
block at a time) is added after the run. Not seen at all: the CUDA context, NCCL's buffers, the caching allocator's
fragmentation, torch.compile (the simulation runs eager), and CUDA autocast's own cast lists (CPU autocast runs; the
model's fp32 ops are explicit .float() calls, which both honour). For those the verdict adds an ALLOWANCE (below),
an assumption, not a measurement; nothing here has run on a GPU.

FLOPs: torch.utils.flop_counter.FlopCounterMode counts one sequence of the student's training step (forward, loss,
backward) and of the teacher's forward, with scaled_dot_product_attention on its math backend: its matmuls are
counted like any other, whereas the CPU's fused attention kernel is not counted at all. They are compared with
train.step_flops (model.py's forward_flops_per_token), MFU's numerator.

tests/test_gpu_memory.py checks that fake tensors give exactly the figures of real CPU tensors under the same
tracker (one process; FSDP on 2 gloo processes), and pins the torch internals this file uses (one section below).
"""

import argparse
import gc
import json
import os
import sys
import time
from contextlib import contextmanager, nullcontext

import torch
import torch.distributed as dist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from components.distributed import set_gradient_sync, shard  # noqa: E402
from components.runtime import micro_steps, optimizer_step  # noqa: E402
from components.runtime import DTYPES, pick_dtype  # noqa: E402
from configurator import ConfigError, TrainConfig, exit_on_error, load_config, model_config  # noqa: E402
from configurator import read_config_file  # noqa: E402
from data.common import resolve_data_dir  # noqa: E402
from distill import kd_loss  # noqa: E402
from let import alignment_loss, make_projectors  # noqa: E402
from model import GPT, GPTConfig, padded_vocab  # noqa: E402
from teacher import Teacher  # noqa: E402

# ---------------------------------------------------------------------------------------------------- torch internals
# Every private torch API this file uses, here and nowhere else (written against torch 2.13.0; PINNED below and by
# tests/test_gpu_memory.py, so that a torch that moves one of them fails loudly instead of counting wrongly).
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker, _FSDPRefType  # noqa: E402
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType, _RefType  # noqa: E402
from torch.distributed.fsdp import FSDPModule  # noqa: E402
from torch.distributed.fsdp._fully_shard._fsdp_param import FSDPParam  # noqa: E402
from torch.distributed.fsdp._fully_shard._fsdp_param_group import FSDPParamGroup  # noqa: E402
import torch.distributed.tensor._sharding_prop as _sharding_prop  # noqa: E402
from torch.testing._internal.distributed.fake_pg import FakeStore  # noqa: E402  (registers backend 'fake')

# the kinds of memory: the tracker's own, and the two this file registers
TEACHER, BUCKETS = 'Teacher', 'DDP buckets'
KINDS = {tracker: _RefType(f'{tracker.__name__}Kinds', {**{k.name: k.value for k in kinds},
                                                         'TEACHER': TEACHER, 'BUCKETS': BUCKETS})
         for tracker, kinds in ((MemTracker, _MemRefType), (FSDPMemTracker, _FSDPRefType))}

# what must exist, checked by check_torch() before every simulation and by the tests
PINNED = ((_sharding_prop, ('detect_fake_mode',)),
          (MemTracker, ('_update_and_maybe_create_winfos', '_update_peak_stats', '_pre_fw_hook', '_post_fw_hook',
                        '_pre_bw_hook', '_post_bw_hook', 'reset_mod_stats', 'track_external')),
          (FSDPModule, ('_get_fsdp_state',)), (FSDPParamGroup, ('post_backward',)))
PINNED_INSTANCE = (('_curr_mem_snap', '_mod_tracker', '_in_opt', '_ref_class'),  # of a MemTracker
                   ('parents', 'is_bw'))                                          # of its ModTracker


def check_torch():
    """Raises if a torch internal this file relies on is gone (a torch upgrade): the message names it."""
    missing = [f"{getattr(o, '__name__', o)}.{a}" for o, attrs in PINNED for a in attrs if not hasattr(o, a)]
    tracker = MemTracker()
    for obj, attrs in zip((tracker, getattr(tracker, '_mod_tracker', None)), PINNED_INSTANCE):
        missing += [f"{type(obj).__name__}().{a}" for a in attrs if not hasattr(obj, a)]
    if 'unsharded_accumulated_grad' not in FSDPParam.__annotations__:
        missing.append('FSDPParam.unsharded_accumulated_grad')
    if missing:
        raise RuntimeError(f"dev/gpu_memory.py: torch {torch.__version__} lacks {missing}, which the simulation "
                           f"uses (written for torch 2.13): update the section 'torch internals'")


@contextmanager
def _no_fake_sharding_propagation():
    """DTensor's sharding propagation computes output shapes under the active fake mode if there is one; inside a
    FakeTensorMode that is the simulation's own, and the trackers then count those whole, unsharded shape
    computations as memory (AdamW's first step, which makes its state on DTensors, read 26.1 GB instead of 3.1 GB
    at 1.4B over 8 ranks). Kept from it, propagation uses a FakeTensorMode of its own, which the trackers skip."""
    detect = _sharding_prop.detect_fake_mode
    _sharding_prop.detect_fake_mode = lambda *args, **kwargs: None
    try:
        yield
    finally:
        _sharding_prop.detect_fake_mode = detect


def _fsdp_accumulated_grads(roots):
    """FSDP's fp32 gradients kept unsharded between micro-steps (bf16 compute, fp32 reduction): the tracker
    counts them as temporaries of the backward that made them; they are relabelled 'Unsharded Grad'."""
    for m in (m for root in roots for m in root.modules()):
        group = m._get_fsdp_state()._fsdp_param_group if isinstance(m, FSDPModule) else None
        for p in group.fsdp_params if group else ():
            if p.unsharded_accumulated_grad is not None:
                yield p.unsharded_accumulated_grad


def make_tracker(fsdp, model, optimizer, skip_modules=()):
    """A tracker that keeps, per phase, the peak total and what held it (by kind), and where in the step it fell."""
    base = FSDPMemTracker if fsdp else MemTracker

    class Tracker(base):
        def __init__(self):
            if fsdp:
                super().__init__(model, optimizer)
            else:
                super().__init__()
            self._ref_class = KINDS[base]
            self.skip = {id(m) for m in skip_modules}  # the teacher's: frozen, MemTracker's hooks fail on them
            self.phase, self.at, self.stage, self.peaks = None, '', '', {}

        def register(self, tensors, kind):
            for t in tensors:
                self._update_and_maybe_create_winfos(t, self._ref_class(kind))

        def _pre_fw_hook(self, module, *args):
            if id(module) not in self.skip:
                super()._pre_fw_hook(module, *args)

        def _post_fw_hook(self, module, *args):
            if id(module) not in self.skip:
                super()._post_fw_hook(module, *args)

        def _pre_bw_hook(self, module, *args):
            if id(module) not in self.skip:
                super()._pre_bw_hook(module, *args)

        def _post_bw_hook(self, module, *args):
            if id(module) not in self.skip:
                super()._post_bw_hook(module, *args)

        def _update_peak_stats(self, peak_state):  # after every operation; the tracker's per-module peaks unused
            if self.phase is None:
                return
            snap = next(iter(self._curr_mem_snap.values()), {'Total': 0})  # one device
            stage = 'optimizer step' if self._in_opt else 'backward' if self._mod_tracker.is_bw else self.stage
            peak = self.peaks.setdefault(self.phase, {'bytes': -1, 'stages': {}})
            peak['stages'][stage] = max(peak['stages'].get(stage, 0), snap['Total'])
            if snap['Total'] > peak['bytes']:
                inner = max(self._mod_tracker.parents, key=len)
                kinds = {str(k.value): v for k, v in snap.items() if k != 'Total' and v}
                peak.update(bytes=snap['Total'], kinds=kinds, where=f"{self.at}, {stage}"
                            + ('' if inner == 'Global' else f", in {inner}"))

    return Tracker()
# ------------------------------------------------------------------------------------------ end of torch internals


# The teachers of the GPU configs, as model.py builds them (from their config.json; SmolLM2's from its GGUF)
TEACHERS = {
    'smollm2-135m': dict(block_size=8192, vocab_size=49152, n_layer=30, n_head=9, n_kv_head=3, n_embd=576,
                         mlp_hidden=1536, bias=False, norm='rmsnorm', mlp='swiglu', pos='rope', rope_theta=100000.0,
                         tie_embeddings=True),                                            # 134.5M parameters
    'HuggingFaceTB/SmolLM-135M': dict(block_size=2048, vocab_size=49152, n_layer=30, n_head=9, n_kv_head=3,
                                      n_embd=576, mlp_hidden=1536, bias=False, norm='rmsnorm', mlp='swiglu',
                                      pos='rope', tie_embeddings=True),                   # 134.5M
    'EleutherAI/pythia-160m': dict(block_size=2048, vocab_size=50304, n_layer=12, n_head=12, n_embd=768,
                                   mlp_hidden=3072, bias=True, norm='layernorm', mlp='gelu_exact', pos='rope',
                                   rope_dims=16, parallel_block=True, tie_embeddings=False),  # 162.3M
    'facebook/opt-125m': dict(block_size=2048, vocab_size=50272, n_layer=12, n_head=12, n_embd=768,
                              mlp_hidden=3072, bias=True, mlp='relu', tie_embeddings=True),  # 125.2M
    'meta-llama/Llama-3.2-1B': dict(block_size=131072, vocab_size=128256, n_layer=16, n_head=32, n_kv_head=8,
                                    n_embd=2048, mlp_hidden=8192, bias=False, norm='rmsnorm', mlp='swiglu',
                                    pos='rope', rope_theta=500000.0, tie_embeddings=True,
                                    rope_scaling={'factor': 32.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0,
                                                  'original_max_position_embeddings': 8192}),  # 1.24B
}
# the vocabulary of a dataset's tokenizer (its folder's last part) when its meta.json is not on this machine
VOCABS = {'smollm2': 49152, 'llama-3.2-1b': 128256, 'pythia-160m': 50277, 'opt-125m': 50265, 'gpt2': 50257,
          'byte': 256}

# every GPU config of config/: (processes, card in GB), as the config's own comment launches it
GPU_CONFIGS = {
    'config/baseline_pile.py': (8, 80), 'config/let_pile.py': (8, 80), 'config/let_pile_smollm.py': (8, 80),
    'config/let_pile_pythia.py': (8, 80), 'config/let_pile_opt.py': (8, 80),
    'config/baseline_pile_7b.py': (32, 80), 'config/let_pile_7b.py': (32, 80),
    'config/let_smollm2_gpu.py': (1, 80), 'config/speedup_smollm2.py': (1, 80),
}

# The allowance for what the simulation cannot see, added to its tensors before the verdict. An ASSUMPTION (nothing
# here has run on a GPU): 3 GB for the CUDA context and library workspaces (a bare torch process already shows
# ~0.8 GB in nvidia-smi, pytorch/pytorch#34323) and NCCL's communicators and buffers; 10% of the tensors for the
# caching allocator's fragmentation (reserved beyond allocated). On a GPU: nvidia-smi's figure against
# torch.cuda.max_memory_reserved() and max_memory_allocated() measures both.
ALLOWANCE_GB, FRAGMENTATION = 3.0, 0.10
SPARE = 0.10  # a config must leave this share of the card free beyond tensors + allowance
GB = 1e9


def data_vocab(dataset):
    """The student's vocabulary: the dataset's meta.json where it is prepared, else its tokenizer's known size."""
    meta = os.path.join(resolve_data_dir(dataset), 'meta.json')
    if os.path.isfile(meta):
        with open(meta) as f:
            return json.load(f)['vocab_size']
    label = os.path.basename(dataset.rstrip('/'))
    if label not in VOCABS:
        raise ConfigError(f"dataset {dataset!r} is not prepared here and its tokenizer {label!r} is not one of "
                          f"{sorted(VOCABS)}: pass --vocab_size=N")
    return VOCABS[label]


def teacher_config(spec):
    if spec not in TEACHERS:
        raise ConfigError(f"teacher {spec!r}: its shape is not known here; known: {sorted(TEACHERS)}")
    return GPTConfig(**TEACHERS[spec])


@contextmanager
def process_group(fake, nproc, needed):
    """The fake group of nproc ranks (this process is rank 0), or the real one torchrun made (fake=False)."""
    if not needed or not fake:
        yield dist.get_world_size() if needed else 1
        return
    dist.init_process_group('fake', store=FakeStore(), rank=0, world_size=nproc)
    try:
        yield nproc
    finally:
        dist.destroy_process_group()


def simulate(cfg, nproc=1, vocab_size=None, teacher=None, fake=True, steps=2, max_micro=3):
    """Memory of cfg's training step on one GPU (rank 0 of nproc). teacher: the teacher's GPTConfig (None: from
    TEACHERS by cfg.teacher). fake=False runs real CPU tensors instead (the validation; under FSDP in a process of a
    real group). Returns ({phase: {'bytes': the peak, 'kinds': {kind: bytes at the peak}, 'where': its place,
    'stages': {stage: its maximum}}}, the run's facts)."""
    check_torch()
    fsdp = cfg.data_parallel == 'fsdp'
    dtype = pick_dtype(cfg.dtype, 'cuda', native_bf16=True, fsdp=fsdp)  # a GPU of Ampere or later
    dtype = 'bfloat16' if dtype == 'float16' else dtype  # fp16 has bf16's sizes (its loss scaler is not run)
    vocab_size = vocab_size or data_vocab(cfg.dataset)
    let_on = bool(cfg.teacher) and cfg.let_lambda > 0
    kd_on = bool(cfg.teacher) and cfg.kd_lambda > 0
    if (let_on or kd_on) and teacher is None:
        teacher = teacher_config(cfg.teacher)
    released = (let_on or kd_on) and not (kd_on and cfg.kd_stop == 0)  # RKD keeps its teacher to the end
    ctx = nullcontext() if dtype == 'float32' else torch.autocast('cpu', DTYPES[dtype])
    device = torch.device('cpu')
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else nullcontext()
    with process_group(fake, nproc, fsdp) as world, _no_fake_sharding_propagation() if fake else nullcontext():
        nproc = world if fsdp else nproc
        accum = micro_steps(cfg, nproc)
        n_micro = min(accum, max_micro)
        with torch.device('meta'):  # as train.py: shapes only, then sharded, then allocated
            model = GPT(model_config(cfg, padded_vocab(vocab_size)))
            t_model = GPT(teacher).to(DTYPES[dtype]) if teacher is not None else None  # as load_teacher casts it
            P = make_projectors(cfg.let_proj, len(cfg.let_layers), model.config.n_embd, teacher.n_embd) \
                if let_on else None
        model.activation_checkpointing = cfg.activation_checkpointing
        if fsdp:  # outside the fake mode: the device mesh must be real
            model = shard(model, device, nproc, dtype, P)
        with fake_mode:
            model.to_empty(device=device)
            model.init_weights(torch.Generator().manual_seed(cfg.seed))
            if P is not None:
                P.to_empty(device=device)
            optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                                   extra_params=list(P.parameters()) if P is not None else ())
            scaler = torch.amp.GradScaler('cpu', enabled=False)
            t = None
            if t_model is not None:
                t_model.to_empty(device=device).init_weights()
                t = Teacher(t_model, 'simulated', cfg.teacher, layer=cfg.let_teacher_layer)
            buckets = None
            if not fsdp and nproc > 1:  # DDP's gradient buckets, allocated at wrap, held for the whole run
                buckets = torch.empty(sum(p.numel() for p in model.parameters() if p.requires_grad))
            X = torch.randint(0, vocab_size, (cfg.batch_size, cfg.block_size))
            Y = torch.randint(0, vocab_size, (cfg.batch_size, cfg.block_size))
            tracker = make_tracker(fsdp, model, optimizer, t_model.modules() if t else ())
            if not fsdp:
                tracker.track_external(model, optimizer, *([P] if P is not None else []))
            if t:
                tracker.register([*t_model.parameters(), *t_model.buffers()], TEACHER)
            if buckets is not None:
                tracker.register([buckets], BUCKETS)
            if fsdp and P is not None:
                tracker.register([p.to_local() for p in P.parameters()], 'Sharded Param')
            k = cfg.let_layers if let_on else ()
            phases = [('with teacher' if t else 'training', steps)] + ([('after S_stop', 1)] if released else [])
            with tracker:
                step = 0
                for phase, n_steps in phases:
                    if phase == 'after S_stop':  # train.py's release: the teacher's memory must come back
                        t.release()
                        t = t_model = None
                        gc.collect()
                    for _ in range(n_steps):
                        step += 1
                        tracker.phase = phase if step > 1 else 'step 1'  # AdamW's state is made at its end
                        for micro in range(n_micro):
                            last = micro == n_micro - 1
                            set_gradient_sync((model, *(P or ())), last)
                            tracker.reset_mod_stats()  # else a second forward raises NotImplementedError
                            tracker.at = f"step {step}, micro-step {micro + 1} of {n_micro}"
                            tracker.stage = 'forward'
                            lam = cfg.let_lambda if let_on and t else 0.0
                            w = cfg.kd_lambda if kd_on and t else 0.0
                            with ctx:
                                logits, loss, h_students = model(X, Y, hidden_layers=k)
                                if lam or w:
                                    tracker.stage = 'teacher forward'
                                    h_teacher, logits_teacher = t(X, logits=w > 0)
                                    tracker.stage = 'loss'
                                if lam:
                                    loss = loss + lam * alignment_loss(h_students, h_teacher, P, cfg.let_loss)[0]
                                if w:
                                    loss = loss + w * kd_loss(logits, logits_teacher, vocab_size,
                                                              cfg.kd_temperature)
                            scaler.scale(loss / accum).backward()
                            logits = h_students = h_teacher = logits_teacher = None
                            if fsdp:
                                tracker.register(_fsdp_accumulated_grads([model, *(P or ())]), 'Unsharded Grad')
                        tracker.at = f"step {step}"
                        optimizer_step(optimizer, scaler, cfg.grad_clip, loss.detach(), fsdp and nproc > 1)
                        loss = None
    block = sum(p.numel() for p in model.transformer.h[0].parameters()) * DTYPES[dtype].itemsize
    facts = dict(nproc=nproc, fsdp=fsdp, dtype=dtype, accum=accum, micro=n_micro, vocab_size=vocab_size,
                 params=model.get_num_params(), block_bytes=block, teacher=cfg.teacher if teacher else '',
                 teacher_params=_n_params(teacher) if teacher else 0)
    return tracker.peaks, facts


def _n_params(config):
    with torch.device('meta'):
        return GPT(config).get_num_params(non_embedding=False)  # as teacher.py's n_params


def count_flops(cfg, vocab_size, teacher=None, kd=False):
    """FLOPs per token of one sequence, counted by FlopCounterMode on fake tensors, attention on its math backend:
    {'student': the training step's (forward, loss, backward), 'teacher': its forward as train.py calls it (with
    logits for distillation)}, each beside train.step_flops' figure, (counted, formula)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    from train import step_flops
    T = cfg.block_size
    out = {}
    with FakeTensorMode(allow_non_fake_inputs=True), sdpa_kernel(SDPBackend.MATH):
        model = GPT(model_config(cfg, padded_vocab(vocab_size)))
        X = torch.randint(0, vocab_size, (1, T))
        with FlopCounterMode(display=False) as counter:
            model(X, X)[1].backward()
        t = None
        if teacher is not None:
            t = Teacher(GPT(teacher), 'simulated', cfg.teacher, layer=cfg.let_teacher_layer)
        student, hidden, logits = step_flops(model, t, T, T)
        out['student'] = (counter.get_total_flops() / T, student / T)
        if t is not None:
            with FlopCounterMode(display=False) as counter:
                t(X, logits=kd)
            out['teacher'] = (counter.get_total_flops() / T, (logits if kd else hidden) / T)
    return out


def verdict(tensors, card_gb):
    """(needed bytes, the most the card allows with SPARE left, fits): tensors plus the allowance."""
    need = tensors * (1 + FRAGMENTATION) + ALLOWANCE_GB * GB
    limit = card_gb * GB * (1 - SPARE)
    return need, limit, need <= limit


def describe(name, peaks, facts, flops, card_gb):
    """The printed report of one run; returns (tensors at the peak with FSDP's prefetch, needed, fits)."""
    f = facts
    how = (f"FSDP over {f['nproc']} processes" if f['fsdp'] else
           f"DDP on {f['nproc']} processes (rank 0 as one process)" if f['nproc'] > 1 else "one process")
    teacher = f", teacher {f['teacher']} ({f['teacher_params'] / 1e6:.1f}M)" if f['teacher'] else ''
    print(f"{name}: {f['params'] / 1e9:.2f}B-parameter student, {how}, {f['dtype']}, {f['accum']} micro-steps per "
          f"step per process ({f['micro']} simulated), vocabulary {f['vocab_size']:,}{teacher}")
    for phase, p in peaks.items():
        print(f"  peak, {phase}: {p['bytes'] / GB:.1f} GB ({p['where']})")
        print("    by kind: " + ", ".join(f"{k} {v / GB:.2f}" for k, v in sorted(p['kinds'].items(),
                                                                             key=lambda kv: -kv[1])))
        print("    by stage: " + ", ".join(f"{k} {v / GB:.1f}" for k, v in p['stages'].items()))
    if 'after S_stop' in peaks:
        a, b = peaks['with teacher'], peaks['after S_stop']
        print(f"  after S_stop: the peak is {(a['bytes'] - b['bytes']) / GB:.2f} GB lower; the teacher's weights, "
              f"{a['kinds'].get(TEACHER, 0) / GB:.2f} GB before, are gone ({b['kinds'].get(TEACHER, 0) / GB:.2f})")
    worst = max(p['bytes'] for p in peaks.values())
    prefetch = f['block_bytes'] if f['fsdp'] else 0
    tensors = worst + prefetch
    need, limit, fits = verdict(tensors, card_gb)
    extra = f" + FSDP's prefetched block {prefetch / GB:.2f}" if prefetch else ''
    print(f"  needs {worst / GB:.1f}{extra} + allowance ({ALLOWANCE_GB:g} GB + {FRAGMENTATION:.0%}) = "
          f"{need / GB:.1f} GB of a {card_gb:g} GB card: "
          + (f"fits, {1 - need / (card_gb * GB):.0%} to spare" if fits else
             f"DOES NOT FIT with {SPARE:.0%} to spare (at most {limit / GB:.1f} GB)"))
    print("  FLOPs per token, FlopCounterMode against train.step_flops: " + "; ".join(
        f"{k} {c / 1e9:.3f} G " + ("= step_flops" if c == s else f"!= step_flops {s / 1e9:.3f} G")
        for k, (c, s) in flops.items()))
    return tensors, need, fits


def runs_of(path, args):
    """[(name, TrainConfig)]: a training config, or each run (baseline, variants) of a speedup.py config."""
    if 'variants' not in read_config_file(path):
        return [(path, load_config(TrainConfig, [path, *args]))]
    from speedup import SpeedupConfig, check_settings, plan_runs
    cfg = load_config(SpeedupConfig, [path, *args])
    check_settings(cfg)
    baseline, variants = plan_runs(cfg)
    first = {}
    for (_, name, _), run in {**baseline, **variants}.items():
        first.setdefault(name, run)  # one seed and learning rate: memory depends on neither
    return [(f"{path} [{name}]", run) for name, run in first.items()]


def check(path, args, nproc, card_gb, vocab_size=None):
    """Simulates and reports every run of a config; returns [(name, tensors, needed, fits)]."""
    rows = []
    for name, cfg in runs_of(path, args):
        name = os.path.relpath(name, REPO) if name.startswith(REPO) else name
        t0 = time.time()
        peaks, facts = simulate(cfg, nproc, vocab_size)
        teacher = teacher_config(cfg.teacher) if facts['teacher'] else None
        flops = count_flops(cfg, facts['vocab_size'], teacher, kd=cfg.kd_lambda > 0)
        tensors, need, fits = describe(name, peaks, facts, flops, card_gb)
        print(f"  ({time.time() - t0:.0f} s)", flush=True)
        rows.append((name, tensors, need, fits))
    return rows


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], usage="%(prog)s CONFIG [--key=value ...]")
    p.add_argument('--nproc', type=int, help="processes (GPUs), as torchrun starts them (default: GPU_CONFIGS', or 1)")
    p.add_argument('--card_gb', type=float, help="the GPU's memory in GB of 1e9 bytes (default: GPU_CONFIGS', or 80)")
    p.add_argument('--vocab_size', type=int, default=None, help="the data's vocabulary (default: its meta.json)")
    p.add_argument('--all', action='store_true', help="every GPU config of config/ on its processes and card")
    a, rest = p.parse_known_args(argv)
    if a.all:
        rows = []
        for path, (nproc, card_gb) in GPU_CONFIGS.items():
            print(f"$ python -m dev.gpu_memory {path} --nproc={nproc} --card_gb={card_gb:g}")
            rows += [(*r, nproc, card_gb) for r in check(os.path.join(REPO, path), rest, nproc, card_gb)]
            print()
        print(f"{'run':<44}{'GPUs':>5}{'tensors':>9}{'needs':>7}{'card':>6}")
        for name, tensors, need, fits, nproc, card_gb in rows:
            print(f"{name:<44}{nproc:>5}{tensors / GB:>9.1f}{need / GB:>7.1f}{card_gb:>6g}"
                  f"  {'fits' if fits else 'DOES NOT FIT'}")
        return 0 if all(r[3] for r in rows) else 1
    configs = [x for x in rest if not x.startswith('--')]
    if len(configs) != 1:
        raise ConfigError("give one config file (python -m dev.gpu_memory config/let_pile.py --nproc=8), or --all")
    nproc, card_gb = GPU_CONFIGS.get(os.path.relpath(os.path.abspath(configs[0]), REPO), (1, 80))
    rows = check(configs[0], [x for x in rest if x.startswith('--')], a.nproc or nproc, a.card_gb or card_gb,
                 a.vocab_size)
    return 0 if all(r[3] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(exit_on_error(main, sys.argv[1:]))
