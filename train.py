"""
Trains a GPT, optionally with Late-to-Early Training (LET, arXiv 2602.05393): a small, long-trained teacher
guides an early block of the student during the first S_stop steps. The LET step is in main(), marked "LET".

Single process (CPU or one GPU):
$ python train.py config/let_shakespeare.py --max_iters=500

Data parallel (DDP) on one node with 8 GPUs; gradient_accumulation_steps is the global count (divided by 8):
$ torchrun --standalone --nproc_per_node=8 train.py config/let_pile.py

Re-running the same command after a crash continues from out_dir/ckpt.pt (init_from='auto'), so
`torchrun --max-restarts=3 ...` recovers by itself.
"""

import dataclasses
import functools
import json
import math
import os
import platform
import sys
import time
from collections import namedtuple
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import ConfigError, load_config
from model import GPT, GPTConfig
from teacher import ALIGN_LOSSES, PROJECTORS, alignment_loss, let_lambda, load_teacher, make_projectors

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
CKPT_FORMAT = 'let-ckpt-v1'


@dataclass
class TrainConfig:
    # defaults: a small byte-level GPT on Shakespeare that trains on a laptop CPU in minutes
    # I/O
    out_dir: str = 'out'
    eval_interval: int = 100
    log_interval: int = 10
    eval_iters: int = 20              # global batches per split per evaluation (the same ones every time)
    eval_only: bool = False
    always_save_checkpoint: bool = True  # False: save only when val loss improves
    init_from: str = 'auto'           # 'auto' (resume if out_dir has a checkpoint) | 'scratch' | 'resume'
    progress: bool = True             # tqdm progress bar on the master process
    # data
    dataset: str = 'shakespeare/byte'  # data/<dataset>/ (or an absolute path) with train.bin, val.bin, meta.json
    gradient_accumulation_steps: int = 1  # global: divided across DDP ranks
    batch_size: int = 32              # sequences per micro-batch per rank
    block_size: int = 128
    # model (model.py's GPTConfig; the defaults are GPT-2's architecture)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 192
    n_kv_head: int = 0                # 0 = n_head
    dropout: float = 0.0
    bias: bool = True
    norm: str = 'layernorm'           # 'layernorm' | 'rmsnorm'
    norm_eps: float = 1e-5
    mlp: str = 'gelu'                 # 'gelu' | 'swiglu'
    mlp_hidden: int = 0
    pos: str = 'learned'              # 'learned' | 'rope'
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    # AdamW
    learning_rate: float = 2e-3
    max_iters: int = 800
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0            # 0 = no clipping
    # learning rate: linear warmup, then cosine decay to min_lr at lr_decay_iters
    decay_lr: bool = True
    warmup_iters: int = 50
    lr_decay_iters: int = 800
    min_lr: float = 2e-4
    # LET (empty teacher = plain training)
    teacher: str = ''                 # 'smollm2-135m' | path to a ckpt.pt (this repo or nanoGPT) | HF GPT-2 dir/name
    let_layers: tuple = (1,)          # student blocks k to align, counted from 0 (1 = the second block)
    let_loss: str = 'cosine'          # 'cosine' (1 - cos, the paper's) | 'mse' (raw states)
    let_proj: str = 'interp'          # 'interp' (the paper's) | 'linear' | 'mlp'
    let_lambda: float = 0.1           # lambda0
    let_stop: int = 250               # S_stop in iterations: lambda reaches 0 here and the teacher is released
    # reliability
    max_nonfinite_steps: int = 10     # this many non-finite steps in a row stop the run
    # system
    device: str = 'auto'              # 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
    dtype: str = 'auto'               # 'auto' (bf16 on CUDA if supported, else fp16; fp32 elsewhere) | 'float32' | 'bfloat16' | 'float16'
    compile: Optional[bool] = None    # None = on for CUDA, off elsewhere
    backend: str = ''                 # DDP backend; '' = nccl on CUDA, gloo on CPU
    seed: int = 1337


def check_config(cfg):
    """Settings that cannot work, caught before any data is read or compute spent."""
    def need(ok, msg):
        if not ok:
            raise ConfigError(msg)
    need(cfg.init_from in ('auto', 'scratch', 'resume'), f"init_from={cfg.init_from!r}: use 'auto', 'scratch' or 'resume'")
    for k in ('batch_size', 'block_size', 'gradient_accumulation_steps', 'eval_interval', 'log_interval', 'eval_iters',
              'max_nonfinite_steps'):
        need(getattr(cfg, k) > 0, f"{k}={getattr(cfg, k)} must be positive")
    need(cfg.max_iters >= 0, f"max_iters={cfg.max_iters} must be >= 0")
    need(cfg.dtype in ('auto', 'float32', 'bfloat16', 'float16'), f"dtype={cfg.dtype!r}: use auto, float32, bfloat16 or float16")
    need(cfg.block_size > 1, "block_size must be at least 2")
    if cfg.teacher:
        need(cfg.let_stop > 0, f"let_stop={cfg.let_stop} must be a positive number of iterations (S_stop)")
        need(cfg.let_lambda >= 0, f"let_lambda={cfg.let_lambda} must be >= 0")
        need(len(cfg.let_layers) > 0 and all(isinstance(k, int) and not isinstance(k, bool) for k in cfg.let_layers),
             f"let_layers={cfg.let_layers!r} must be one or more block indices")
        need(all(0 <= k < cfg.n_layer for k in cfg.let_layers) and len(set(cfg.let_layers)) == len(cfg.let_layers),
             f"let_layers={cfg.let_layers}: blocks are counted from 0, so each must be in 0..{cfg.n_layer - 1} "
             f"(n_layer={cfg.n_layer}), without repeats")
        need(cfg.let_proj in PROJECTORS, f"let_proj={cfg.let_proj!r}: use one of {PROJECTORS}")
        need(cfg.let_loss in ALIGN_LOSSES, f"let_loss={cfg.let_loss!r}: use one of {ALIGN_LOSSES}")


def resolve_device(name):
    """'auto' picks cuda when available, then mps, then cpu."""
    if name != 'auto':
        return name
    return 'cuda' if torch.cuda.is_available() else ('mps' if torch.backends.mps.is_available() else 'cpu')


def resolve_dtype(name, device_type):
    """'auto' is bf16 on CUDA (fp16 where bf16 is missing, with a GradScaler) and fp32 elsewhere."""
    if name != 'auto':
        return name
    if device_type != 'cuda':
        return 'float32'
    return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'


def resolve_compile(setting, device_type):
    """None compiles on CUDA only: on a CPU compiling short runs costs more than it saves."""
    return device_type == 'cuda' if setting is None else setting


def describe_machine(device):
    """What timings are measured on, in words: the CPU, the accelerator, torch."""
    cpu = platform.processor() or platform.machine()
    if os.path.isfile('/proc/cpuinfo'):  # Linux: platform.processor() is often empty there
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    device = str(device)
    if device.startswith('cuda'):
        device += f" ({torch.cuda.get_device_name(torch.device(device))})"
    return (f"{cpu}, {os.cpu_count()} CPUs (torch threads {torch.get_num_threads()}), torch {torch.__version__}, "
            f"device {device}")


def model_config(cfg, vocab_size):
    """The student's GPTConfig: the config's model fields, with the vocabulary of the data."""
    names = {f.name for f in dataclasses.fields(GPTConfig)}
    args = {k: v for k, v in dataclasses.asdict(cfg).items() if k in names}
    args['vocab_size'] = vocab_size
    try:
        return GPTConfig(**args)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def padded_vocab(n):
    """Vocabulary rounded up to a multiple of 64 (faster matmuls); the extra ids are never in the data."""
    return 64 * math.ceil(n / 64)


# -----------------------------------------------------------------------------
# data: token windows in a fixed order that depends only on (seed, step), so baseline and LET runs see the
# same batches, a resumed run continues exactly, and DDP ranks read disjoint windows by construction

def resolve_data_dir(dataset):
    return dataset if os.path.isabs(dataset) else os.path.join(REPO_DIR, 'data', dataset)


def check_dataset(data_dir):
    """Reads meta.json and checks the bins against it; returns meta. Every failure names the fix."""
    meta_path = os.path.join(data_dir, 'meta.json')
    prepare_hint = "run the dataset's prepare script (e.g. python data/shakespeare/prepare.py --tokenizer=byte)"
    if not os.path.isfile(meta_path):
        raise ConfigError(f"dataset not found: {meta_path} is missing; {prepare_hint}")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        meta['tokenizer'], vocab_size = str(meta['tokenizer']), int(meta['vocab_size'])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{meta_path} is not valid dataset metadata ({e}); {prepare_hint}") from None
    if meta.get('dtype', 'uint16') != 'uint16':
        raise ConfigError(f"{meta_path}: dtype {meta['dtype']!r} is not supported; the bins must be uint16")
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'{split}.bin')
        if not os.path.isfile(path):
            raise ConfigError(f"dataset incomplete: {path} is missing; {prepare_hint}")
        size = os.path.getsize(path)
        if size == 0:
            raise ConfigError(f"{path} is empty; {prepare_hint}")
        expected = meta.get(f'{split}_tokens')
        if size % 2:
            raise ConfigError(f"{path} has an odd number of bytes: truncated, or not uint16 tokens; {prepare_hint}")
        if expected is not None and size // 2 != expected:
            raise ConfigError(f"{path} holds {size // 2} tokens but meta.json says {expected}: the data and its "
                              f"metadata disagree (truncated or mixed-up files); {prepare_hint}")
        data = np.memmap(path, dtype=np.uint16, mode='r')
        # every id must fit the vocabulary: a full scan up to 512M tokens (about a second per GB), beyond that
        # 256 evenly spaced chunks of 1M tokens, so a Pile-sized file does not cost minutes at every start
        chunk = 1 << 20
        starts = range(0, len(data), chunk) if len(data) <= 512 * chunk else np.linspace(0, len(data) - chunk, 256).astype(np.int64)
        top = max(int(data[i:i + chunk].max()) for i in starts)
        if top >= vocab_size:
            raise ConfigError(f"{path} holds token id {top}, outside the vocabulary of {vocab_size} in meta.json; "
                              f"the data was made with another tokenizer: {prepare_hint}")
        del data
    return meta


class TokenWindows:
    """A split's tokens cut into non-overlapping windows of block_size + 1 tokens (inputs and shifted targets).
    Training visits the windows in a seeded random permutation, a new one each epoch: sample g of the run is
    window perm_{g // n}[g % n]. Evaluation reads a fixed set of windows spread over the split, so every
    evaluation scores the same text."""

    def __init__(self, path, block_size, seed):
        self.path, self.block_size, self.seed = path, block_size, seed
        n_tokens = os.path.getsize(path) // 2
        self.n = (n_tokens - 1) // block_size
        if self.n < 1:
            raise ConfigError(f"{path} holds {n_tokens} tokens: too few for one window of block_size={block_size}")
        self._perm_epoch, self._perm = None, None

    def train_windows(self, first, count):
        """Window indices of samples first .. first+count-1 of the run's sample order."""
        out = []
        for g in range(first, first + count):
            epoch, i = divmod(g, self.n)
            if epoch != self._perm_epoch:
                gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                self._perm, self._perm_epoch = torch.randperm(self.n, generator=gen).numpy(), epoch
            out.append(int(self._perm[i]))
        return out

    def eval_windows(self, first, count, total):
        """Windows first .. first+count-1 of a fixed set of `total` windows spread evenly over the split."""
        stride = max(1, self.n // total)
        return [(j * stride) % self.n for j in range(first, first + count)]

    def read(self, windows, device):
        """(x, y) of shape (len(windows), block_size): the windows' tokens and the same shifted by one."""
        T = self.block_size
        data = np.memmap(self.path, dtype=np.uint16, mode='r')  # re-opened per batch: avoids a memmap leak
        rows = np.stack([data[w * T: w * T + T + 1] for w in windows]).astype(np.int64)
        x, y = torch.from_numpy(rows[:, :-1].copy()), torch.from_numpy(rows[:, 1:].copy())
        if device.type == 'cuda':
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x.to(device), y.to(device)


# -----------------------------------------------------------------------------
# MFU against the real device's peak dense bf16/fp16 FLOP/s (vendor datasheets, no sparsity)

PEAK_FLOPS = [  # (substring of torch.cuda.get_device_name(), peak)
    ('H200', 989e12), ('H100 NVL', 835e12), ('H100 PCIe', 756e12), ('H100', 989e12), ('GH200', 989e12),
    ('A100', 312e12), ('A800', 312e12), ('L40S', 362e12), ('L4', 121e12), ('A10G', 125e12), ('A10', 125e12),
    ('RTX 4090', 165e12), ('RTX 3090', 71e12), ('V100', 125e12), ('T4', 65e12),
]


def device_peak_flops(device, ptdtype):
    """Peak FLOP/s for MFU, or None where unknown (CPUs, fp32, unlisted cards): then MFU is not reported."""
    if device.type != 'cuda' or ptdtype == torch.float32:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS if key in name), None)


# -----------------------------------------------------------------------------
# checkpoints: written to a temporary file, then renamed, so a crash never leaves a broken ckpt.pt

def save_checkpoint(path, state):
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path):
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:
        raise ConfigError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it is corrupt. Move it away "
                          f"to start over, or point out_dir elsewhere") from None
    if not isinstance(ckpt, dict) or ckpt.get('format') != CKPT_FORMAT:
        raise ConfigError(f"{path} is not a checkpoint written by this train.py (format {CKPT_FORMAT})")
    return ckpt


def _parses(line):
    """A complete JSON line (a killed process can leave half a line at the end of the log)."""
    try:
        json.loads(line)
        return line.endswith('\n')
    except ValueError:
        return False


def get_lr(cfg, it):
    """Linear warmup for warmup_iters, cosine decay to min_lr at lr_decay_iters, then min_lr."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it > cfg.lr_decay_iters:
        return cfg.min_lr
    decay_ratio = (it - cfg.warmup_iters) / max(1, cfg.lr_decay_iters - cfg.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


def optimizer_step(optimizer, scaler, grad_clip, loss, ddp):
    """Clips and applies the accumulated gradients, unless the loss or a gradient is non-finite: then the step is
    skipped and the weights and optimizer state stay as they were. The gradient norm is the same on every rank
    (DDP averaged the gradients) and the loss flag is reduced across ranks, so all ranks decide alike.
    Returns (stepped, grad_norm); the gradients are cleared either way."""
    scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group['params'] if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float('inf'))
    bad = (~torch.isfinite(grad_norm) | ~torch.isfinite(loss)).float()
    if ddp:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    stepped = not bad.item()  # the step's one host sync
    if stepped:
        scaler.step(optimizer)
    scaler.update()  # fp16: a skipped step lowers the loss scale, as an overflow should
    optimizer.zero_grad(set_to_none=True)
    return stepped, grad_norm


def step_seed(seed, rank, it):
    """Dropout's random stream for one step of one rank: a pure function of (seed, rank, step), so a resumed run
    draws exactly what the uninterrupted run would have drawn, on every rank, with no state to save."""
    return int(np.random.SeedSequence([seed, rank, it]).generate_state(1)[0])


# -----------------------------------------------------------------------------

Run = namedtuple('Run', 'model projectors records')  # what main() returns: the plain student, LET's projectors, eval records


def main(args=None, overrides=None):
    """Runs training and returns a Run. args: as on the command line (config files and --key=value);
    overrides: a dict applied last (for tests and speedup.py)."""
    cfg = load_config(TrainConfig, sys.argv[1:] if args is None else args, overrides)
    check_config(cfg)

    # DDP: torchrun sets RANK, LOCAL_RANK and WORLD_SIZE
    ddp = int(os.environ.get('RANK', -1)) != -1
    device_name = resolve_device(cfg.device)
    if ddp:
        rank, local_rank, world_size = int(os.environ['RANK']), int(os.environ['LOCAL_RANK']), int(os.environ['WORLD_SIZE'])
        if device_name.startswith('cuda'):
            device_name = f'cuda:{local_rank}'
            torch.cuda.set_device(device_name)
        dist.init_process_group(backend=cfg.backend or ('nccl' if device_name.startswith('cuda') else 'gloo'))
    else:
        rank, local_rank, world_size = 0, 0, 1
    master = rank == 0
    device = torch.device(device_name)
    try:
        return _train(cfg, device, ddp, rank, world_size, master)
    finally:
        if ddp:
            dist.destroy_process_group()


def _train(cfg, device, ddp, rank, world_size, master):
    def say(msg):
        if master:
            print(msg, flush=True)

    if cfg.gradient_accumulation_steps % world_size:
        raise ConfigError(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps} must be a multiple of the "
                          f"{world_size} DDP processes")
    accum = cfg.gradient_accumulation_steps // world_size  # micro-steps per rank
    global_batch = cfg.batch_size * cfg.gradient_accumulation_steps  # sequences per optimizer step, all ranks
    tokens_per_iter = global_batch * cfg.block_size
    say(f"tokens per iteration: {tokens_per_iter:,} ({world_size} ranks x {accum} micro-steps x "
        f"{cfg.batch_size} x {cfg.block_size})")

    dtype = resolve_dtype(cfg.dtype, device.type)
    say(f"machine: {describe_machine(device)}; dtype {dtype}")
    ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
    autocast = nullcontext() if ptdtype == torch.float32 else torch.autocast(device_type=device.type, dtype=ptdtype)
    use_compile = resolve_compile(cfg.compile, device.type)
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # out_dir must be writable before anything is computed
    try:
        os.makedirs(cfg.out_dir, exist_ok=True)
        probe = os.path.join(cfg.out_dir, f'.write-test-{rank}')
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"out_dir {cfg.out_dir!r} is not writable ({e.strerror}); choose another out_dir") from None
    ckpt_path = os.path.join(cfg.out_dir, 'ckpt.pt')

    # data
    data_dir = resolve_data_dir(cfg.dataset)
    meta = check_dataset(data_dir)
    vocab_size = padded_vocab(meta['vocab_size'])
    train_data = TokenWindows(os.path.join(data_dir, 'train.bin'), cfg.block_size, cfg.seed)
    val_data = TokenWindows(os.path.join(data_dir, 'val.bin'), cfg.block_size, cfg.seed)

    # checkpoint to resume from: 'auto' resumes when out_dir has one; 'scratch' never overwrites one
    resume = cfg.init_from == 'resume' or (cfg.init_from == 'auto' and os.path.exists(ckpt_path))
    if cfg.init_from == 'scratch' and os.path.exists(ckpt_path):
        raise ConfigError(f"{ckpt_path} exists and init_from='scratch' would overwrite it; use init_from='auto' to "
                          f"continue it, or another out_dir")
    if cfg.init_from == 'resume' and not os.path.exists(ckpt_path):
        raise ConfigError(f"init_from='resume' but {ckpt_path} does not exist")
    gptconf = model_config(cfg, vocab_size)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt['model_args'] != dataclasses.asdict(gptconf):
            diff = {k: (v, dataclasses.asdict(gptconf).get(k)) for k, v in ckpt['model_args'].items()
                    if dataclasses.asdict(gptconf).get(k) != v}
            raise ConfigError(f"{ckpt_path} holds a model of another shape (checkpoint vs config: {diff}); use the "
                              f"checkpoint's settings, or another out_dir")
        for k in ('teacher', 'let_layers', 'let_proj'):
            if ckpt['config'][k] != getattr(cfg, k):
                raise ConfigError(f"{ckpt_path} was trained with {k}={ckpt['config'][k]!r}, the config says "
                                  f"{getattr(cfg, k)!r}; keep the checkpoint's value, or use another out_dir")

    # the teacher (LET): frozen, in the training dtype, never part of the student, its optimizer or checkpoint
    teacher = None
    start_iter = ckpt['iter_num'] if ckpt else 0
    let_on = bool(cfg.teacher) and cfg.let_lambda > 0  # lambda0 = 0 is plain training: no teacher, no projector
    if let_on and start_iter < cfg.let_stop:
        try:
            teacher = load_teacher(cfg.teacher, device=device, dtype=ptdtype if device.type == 'cuda' else torch.float32)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"teacher={cfg.teacher!r}: {e}") from None
        if teacher.tokenizer != meta['tokenizer']:
            raise ConfigError(f"teacher {cfg.teacher!r} uses the {teacher.tokenizer!r} tokenizer but dataset "
                              f"{cfg.dataset!r} was made with {meta['tokenizer']!r}; LET aligns token by token, so "
                              f"prepare the data with --tokenizer={teacher.tokenizer}")
        if teacher.model.config.block_size < cfg.block_size:
            raise ConfigError(f"teacher {cfg.teacher!r} reads at most {teacher.model.config.block_size} tokens, "
                              f"fewer than block_size={cfg.block_size}; lower block_size")
        if teacher.model.config.vocab_size < meta['vocab_size']:
            raise ConfigError(f"teacher {cfg.teacher!r} has a vocabulary of {teacher.model.config.vocab_size}, "
                              f"smaller than the data's {meta['vocab_size']}")
        if ckpt and ckpt['projector_width'] not in (None, teacher.width):
            raise ConfigError(f"teacher {cfg.teacher!r} is {teacher.width} wide, but the projector in {ckpt_path} was "
                              f"trained for a {ckpt['projector_width']}-wide teacher; resume with that teacher")
        if use_compile:
            teacher.compile()
        say(f"teacher: {cfg.teacher} ({teacher.n_params / 1e6:.1f}M parameters, width {teacher.width}, "
            f"tokenizer {teacher.tokenizer})")

    # the student
    torch.manual_seed(cfg.seed)
    model = GPT(gptconf)
    projectors = None
    if let_on:
        d_teacher = teacher.width if teacher else ckpt['projector_width']
        projectors = make_projectors(cfg.let_proj, len(cfg.let_layers), gptconf.n_embd, d_teacher, seed=cfg.seed + 1)
    if ckpt:
        model.load_state_dict(ckpt['model'])
        if projectors is not None:
            if ckpt['projectors'] is None:
                raise ConfigError(f"{ckpt_path} was trained without LET (let_lambda=0); keep let_lambda=0 to resume it")
            projectors.load_state_dict(ckpt['projectors'])
    model.to(device)
    if projectors is not None:
        projectors.to(device)
    say(f"student: {model.get_num_params() / 1e6:.2f}M parameters")
    projector_params = list(projectors.parameters()) if projectors is not None else []
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), device.type,
                                           extra_params=projector_params)
    scaler = torch.amp.GradScaler(device.type, enabled=(ptdtype == torch.float16))
    if ckpt:
        optimizer.load_state_dict(ckpt['optimizer'])
        scaler.load_state_dict(ckpt['scaler'])
    raw_model = model  # the plain student: what is saved, evaluated and sampled
    if use_compile:
        say("compiling the model...")
        model = torch.compile(model)
    eval_model = model
    if ddp:
        # broadcast_buffers=False: the only buffers are rotary tables, identical on every rank
        model = DDP(model, device_ids=[device.index] if device.type == 'cuda' else None, broadcast_buffers=False)

    flops_student = raw_model.forward_flops_per_token(cfg.block_size) * 3 * tokens_per_iter
    # the teacher runs forward only, without its head (final_hidden)
    flops_teacher = teacher.model.forward_flops_per_token(cfg.block_size, head=False) * tokens_per_iter if teacher else 0
    peak = device_peak_flops(device, ptdtype)
    if peak is None:
        say(f"MFU: not reported (no known peak FLOP/s for {device} in {dtype})")

    @torch.no_grad()
    def estimate_loss():
        """Mean loss per split over the same eval_iters global batches at every evaluation; the set of windows
        does not depend on the number of ranks, so 1 and 8 GPUs report the same quantity."""
        out = {}
        raw_model.eval()
        total = cfg.eval_iters * global_batch
        for split, windows in (('train', train_data), ('val', val_data)):
            losses = torch.zeros(cfg.eval_iters * accum, device=device)
            for k in range(cfg.eval_iters * accum):
                first = (k * world_size + rank) * cfg.batch_size
                X, Y = windows.read(windows.eval_windows(first, cfg.batch_size, total), device)
                with autocast:
                    _, loss = eval_model(X, Y)
                losses[k] = loss
            mean = losses.mean()
            if ddp:
                dist.all_reduce(mean, op=dist.ReduceOp.AVG)
            out[split] = mean.item()
        raw_model.train()
        return out

    def checkpoint_state(iter_num, best_val_loss, train_time):
        return {
            'format': CKPT_FORMAT,
            'model': raw_model.state_dict(),
            'model_args': dataclasses.asdict(gptconf),
            'tokenizer': meta['tokenizer'],
            'projectors': projectors.state_dict() if projectors is not None else None,
            'projector_width': projectors[0].d_teacher if projectors is not None else None,
            'optimizer': optimizer.state_dict(),
            'scaler': scaler.state_dict(),
            'config': dataclasses.asdict(cfg),
            'teacher_calls': teacher_calls(),
            'iter_num': iter_num,
            # the data position and the random streams are functions of (seed, iter_num): see TokenWindows, step_seed
            'samples_seen': iter_num * global_batch,
            'best_val_loss': best_val_loss,
            'train_time': train_time,
        }

    log_path = os.path.join(cfg.out_dir, 'log.jsonl')

    def log_record(record):
        if master:
            with open(log_path, 'a') as f:
                f.write(json.dumps(record) + '\n')

    teacher_calls_done = ckpt.get('teacher_calls', 0) if ckpt else 0  # forwards of teachers already released

    def teacher_calls():
        return teacher_calls_done + (teacher.calls if teacher else 0)

    iter_num = start_iter
    best_val_loss = ckpt['best_val_loss'] if ckpt else float('inf')
    train_time = ckpt['train_time'] if ckpt else 0.0  # seconds spent in training steps (not eval or saving)
    if ckpt:
        say(f"resuming from {ckpt_path} at iteration {iter_num}")
    del ckpt
    if master and os.path.exists(log_path):
        # a fresh run starts a fresh log; a resumed one drops what the lost run logged after its checkpoint
        kept = []
        if resume:
            with open(log_path) as f:
                kept = [line for line in f if _parses(line) and json.loads(line)['iter'] <= iter_num]
        with open(log_path, 'w') as f:
            f.writelines(kept)
    records = []
    nonfinite_in_a_row, skipped_total = 0, 0
    t_start = time.time()
    progress = None
    if master and cfg.progress and not cfg.eval_only:
        from tqdm import tqdm
        progress = tqdm(total=cfg.max_iters, initial=iter_num, unit='it', dynamic_ncols=True, file=sys.stdout)
    write = progress.write if progress else (functools.partial(print, flush=True) if master else (lambda *a, **k: None))
    interval, n_logged = None, 0

    while True:
        # evaluate, record and checkpoint every eval_interval steps and at the end
        resumed_here = resume and iter_num == start_iter  # evaluated and logged before the checkpoint was saved
        if cfg.eval_only or ((iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters) and not resumed_here):
            losses = estimate_loss()
            record = {'event': 'eval', 'iter': iter_num, 'tokens': iter_num * tokens_per_iter,
                      'train_time': round(train_time, 3), 'wall_time': round(time.time() - t_start, 3),
                      'train_loss': losses['train'], 'val_loss': losses['val'],
                      'lambda': let_lambda(iter_num, cfg.let_lambda, cfg.let_stop) if let_on else 0.0}
            records.append(record)
            log_record(record)
            if master:
                write(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            if cfg.eval_only:
                break
            improved = losses['val'] < best_val_loss
            best_val_loss = min(best_val_loss, losses['val'])
            if master and iter_num > start_iter and (improved or cfg.always_save_checkpoint):
                save_checkpoint(ckpt_path, checkpoint_state(iter_num, best_val_loss, train_time))
        if iter_num >= cfg.max_iters:
            break

        # ---------------------------------------------------------------- LET
        # lambda(s) = lambda0 * max(0, 1 - s / S_stop); from S_stop on the step is plain next-token training
        lam = let_lambda(iter_num, cfg.let_lambda, cfg.let_stop) if teacher else 0.0
        if teacher and lam == 0.0:
            teacher_calls_done += teacher.calls
            teacher.release()  # S_stop reached: no more teacher work, its memory goes back (outside the timed step)
            teacher = None
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)  # cuda_peak_gb from here on shows the run without it
            flops_teacher = 0
            say(f"step {iter_num}: S_stop reached, teacher released")

        t0 = time.time()
        lr = get_lr(cfg, iter_num)
        for group in optimizer.param_groups:
            group['lr'] = lr
        torch.manual_seed(step_seed(cfg.seed, rank, iter_num))

        step_loss = torch.zeros((), device=device)
        step_lm = torch.zeros((), device=device)
        step_align = torch.zeros((), device=device)
        step_cos = torch.zeros((), device=device)
        first_sample = iter_num * global_batch
        for micro_step in range(accum):
            # rank r's micro-step m reads its own slice of the step's samples: ranks never share a window
            first = first_sample + (micro_step * world_size + rank) * cfg.batch_size
            X, Y = train_data.read(train_data.train_windows(first, cfg.batch_size), device)
            if ddp:
                # average gradients across ranks only once, after the last micro-step
                model.require_backward_grad_sync = micro_step == accum - 1
            with autocast:
                if lam > 0:
                    teacher_hidden = teacher.hidden(X)  # (B, T, d_t): final layer, after final norm, no grad
                    _, lm_loss, student_hiddens = model(X, Y, hidden_layers=cfg.let_layers)  # after blocks k
                    align_loss, cos = alignment_loss(student_hiddens, teacher_hidden, projectors, cfg.let_loss)
                    loss = lm_loss + lam * align_loss  # L_total = L_NLL + lambda(s) * L_align
                    step_align += align_loss.detach() / accum
                    step_cos += cos / accum
                else:
                    _, lm_loss = model(X, Y)
                    loss = lm_loss
            step_loss += loss.detach() / accum
            step_lm += lm_loss.detach() / accum
            scaler.scale(loss / accum).backward()
        if ddp and lam > 0 and projector_params:
            # DDP averages the student's gradients; the projector sits outside it, so average its gradients here
            grads = [p.grad for p in projector_params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.AVG)
            offset = 0
            for g in grads:
                g.copy_(flat[offset: offset + g.numel()].view_as(g))
                offset += g.numel()
        # ----------------------------------------------------------------------

        stepped, grad_norm = optimizer_step(optimizer, scaler, cfg.grad_clip, step_loss, ddp)
        if stepped:
            nonfinite_in_a_row = 0
        else:
            nonfinite_in_a_row += 1
            skipped_total += 1
            write(f"step {iter_num}: non-finite loss or gradient, step skipped ({nonfinite_in_a_row} in a row, "
                  f"{skipped_total} in all)")
            if nonfinite_in_a_row >= cfg.max_nonfinite_steps:
                kept = (f"the last good checkpoint {ckpt_path} is intact" if os.path.exists(ckpt_path)
                        else "no checkpoint had been written yet")
                raise RuntimeError(f"{nonfinite_in_a_row} non-finite steps in a row at iteration {iter_num}: training "
                                   f"stopped; {kept}. Lower learning_rate, raise warmup_iters or check the data, then "
                                   f"re-run the same command to resume")

        if device.type == 'cuda':
            torch.cuda.synchronize(device)  # honest step times (optimizer_step's .item() already waited for most)
        dt = time.time() - t0
        train_time += dt
        iter_num += 1
        # interval sums stay on the device: no host sync until the log line
        interval = [step_loss, step_lm, step_align, step_cos] if interval is None else \
            [a + b for a, b in zip(interval, (step_loss, step_lm, step_align, step_cos))]
        n_logged += 1
        if progress:
            progress.update(1)
        if iter_num % cfg.log_interval == 0 or iter_num == cfg.max_iters:
            # one log line per interval: losses averaged over the interval's steps; the last step's speed
            loss_l, lm_l, al_l, cos_v = (t.item() / n_logged for t in interval)
            interval, n_logged = None, 0
            flops = flops_student + (flops_teacher if lam > 0 else 0)
            record = {'event': 'train', 'iter': iter_num, 'loss': loss_l, 'lm_loss': lm_l,
                      'align_loss': al_l, 'cos': cos_v, 'lambda': lam, 'lr': lr, 'grad_norm': grad_norm.item(),
                      'dt_ms': dt * 1000, 'tok_per_s': tokens_per_iter / dt,
                      'mfu': flops_student / dt / peak if peak else None,
                      'mfu_with_teacher': flops / dt / peak if peak else None,
                      'teacher_calls': teacher_calls(), 'skipped': skipped_total,
                      'flops_student': flops_student, 'flops_teacher': flops_teacher if lam > 0 else 0,
                      'cuda_mem_gb': torch.cuda.memory_allocated(device) / 2**30 if device.type == 'cuda' else None,
                      'cuda_peak_gb': torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else None}
            log_record(record)
            if master:
                line = f"iter {iter_num}: loss {lm_l:.4f}"
                if let_on:
                    line += f", align {al_l:.4f}, cos {cos_v:.3f}, lambda {lam:.3g}"
                line += f", lr {lr:.2e}, time {dt * 1000:.0f}ms, {tokens_per_iter / dt:,.0f} tok/s"
                if peak:
                    line += f", mfu {record['mfu'] * 100:.1f}%"
                    if lam > 0:
                        line += f" ({record['mfu_with_teacher'] * 100:.1f}% with teacher)"
                write(line)
    if progress:
        progress.close()
    return Run(raw_model, projectors, records)


if __name__ == '__main__':
    try:
        main()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
