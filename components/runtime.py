"""
Where and how a run executes, for train.py (and the tools): the device, the precision, compile, the machine in
words and its peak FLOP/s (MFU), the clock of the training steps; the processes torchrun starts, parallelize
(DDP or FSDP2's sharding, activation checkpointing and compile for the student and LET's projectors), and the
places where ranks must agree by hand: the norm of sharded gradients, and whether to take a step.
"""

import os
import platform
import re
import time
from collections import namedtuple
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from configurator import ConfigError

DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def resolve_device(name):
    """'auto' picks cuda when available, then mps, then cpu. A device this torch cannot use is a ConfigError that
    says why, before anything is allocated."""
    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else ('mps' if torch.backends.mps.is_available() else 'cpu')
    kind = name.split(':')[0]
    if kind == 'cuda' and not torch.cuda.is_available():
        why = ('this torch was built without CUDA' if torch.version.cuda is None
               else 'no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver)')
        raise ConfigError(f"device={name!r}, but {why} (torch {torch.__version__}); use --device=cpu or "
                          f"--device=auto, or install a CUDA build of torch")
    if kind == 'cuda' and ':' in name and int(name.split(':')[1]) >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r}, but only {torch.cuda.device_count()} CUDA device(s) are visible")
    if kind == 'mps' and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name!r}, but MPS (Apple GPUs) is not available here; use --device=cpu")
    if kind not in ('cpu', 'cuda', 'mps'):
        raise ConfigError(f"device={name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return name


def pick_dtype(name, device_type, native_bf16, fsdp=False):
    """'auto': fp32 off CUDA; on CUDA bf16 where the GPU has it natively (Ampere and later), else fp16 with a
    GradScaler, or fp32 under FSDP (no sharded loss scaler here). Emulated bf16 (V100, T4) runs several times
    slower than fp16, so it does not count. An explicit name is returned as it is."""
    if name != 'auto':
        return name
    if device_type != 'cuda':
        return 'float32'
    if native_bf16:
        return 'bfloat16'
    return 'float32' if fsdp else 'float16'


def resolve_dtype(name, device_type, fsdp=False):
    """pick_dtype() for this machine's current CUDA device."""
    native = device_type == 'cuda' and torch.cuda.is_bf16_supported(including_emulation=False)
    return pick_dtype(name, device_type, native, fsdp)


def autocast(device_type, dtype):
    """Mixed precision for the forward passes: a no-op in float32."""
    if dtype == 'float32':
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=DTYPES[dtype])


def resolve_compile(setting, device_type):
    """None compiles on CUDA only: on a CPU, compiling short runs costs more than it saves."""
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


# peak dense bf16/fp16 FLOP/s from the vendors' datasheets (no sparsity), by a token of the device's name
PEAK_FLOPS = {
    'H200': 989e12, 'H200 NVL': 835e12, 'GH200': 989e12, 'H100': 989e12, 'H100 NVL': 835e12, 'H100 PCIe': 756e12,
    'A100': 312e12, 'A800': 312e12, 'L40S': 362e12, 'L40': 181e12, 'L4': 121e12, 'A10G': 125e12, 'A10': 125e12,
    'RTX 4090': 165e12, 'RTX 3090': 71e12, 'V100': 125e12, 'T4': 65e12,
}


def peak_flops_for(name, dtype):
    """Peak FLOP/s of the device called `name` (torch.cuda.get_device_name), or None where unknown or in fp32.
    A key matches a whole token (letters and digits on neither side: 'L4' is not in 'NVIDIA L40', 'H200' not in
    'GH200', but 'A100' is in 'A100-SXM4-80GB'), and the longest match wins ('H100 NVL' over 'H100')."""
    if dtype == 'float32':
        return None
    keys = [key for key in PEAK_FLOPS if re.search(rf'(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])', name)]
    return PEAK_FLOPS[max(keys, key=len)] if keys else None


def device_peak_flops(device, dtype):
    """Peak FLOP/s for MFU, or None where unknown (CPUs, fp32, unlisted cards): then MFU is not reported."""
    if device.type != 'cuda' or dtype == 'float32':
        return None
    return peak_flops_for(torch.cuda.get_device_name(device), dtype)


class Stopwatch:
    """Seconds spent in training steps. A step queues its work on the GPU and never waits for it, so the clock
    is read only where the host waits anyway (a log line, an evaluation, a save, S_stop): stop() synchronises
    first, and the device's queued work is counted where it ran, not in the next evaluation."""

    def __init__(self, device, total=0.0):
        self.device, self.total, self.lap_time, self.t0 = device, total, 0.0, None

    def start(self):
        if self.t0 is None:
            self.t0 = time.time()

    def synchronizes(self):
        """Whether stop() waits for the device: CUDA queues a step's work, a CPU has done it when its call
        returns."""
        return self.device.type == 'cuda'

    def stop(self):
        if self.t0 is None:
            return
        if self.synchronizes():
            torch.cuda.synchronize(self.device)
        dt = time.time() - self.t0
        self.t0 = None
        self.total += dt
        self.lap_time += dt

    def lap(self):
        """Seconds in steps since the last lap (the clock stops: it starts again with the next step)."""
        self.stop()
        dt, self.lap_time = self.lap_time, 0.0
        return dt


# this process's place in the job; on: launched by torchrun (a process group exists)
Dist = namedtuple('Dist', 'rank local_rank world_size on', defaults=(0, 0, 1, False))


def init_distributed(device, backend='', data_parallel='ddp'):
    """Joins the process group when torchrun started this process (it sets RANK, LOCAL_RANK,
    WORLD_SIZE). Returns (Dist, device): on CUDA, each process takes the GPU of its local rank."""
    if 'RANK' not in os.environ:
        if data_parallel == 'fsdp':  # nothing to shard with; torchrun can start a single process
            raise ConfigError("data_parallel='fsdp' shards the student across the processes that "
                              "torchrun starts: launch with torchrun (--nproc_per_node=1 for one "
                              "process), or use data_parallel='ddp' to train in this one process")
        return Dist(), device
    from components.distributed import check_restarts
    check_restarts()
    d = Dist(int(os.environ['RANK']), int(os.environ['LOCAL_RANK']), int(os.environ['WORLD_SIZE']),
             on=True)
    if device.startswith('cuda'):
        device = f'cuda:{d.local_rank}'
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend or ('nccl' if device.startswith('cuda') else 'gloo'))
    return d, device


def micro_steps(cfg, world_size):
    """Micro-steps per process: gradient_accumulation_steps counts those of all processes together,
    so a config means the same tokens per step on 1 or 8 GPUs. When it does not divide, the error
    says what to pass."""
    accum, n = cfg.gradient_accumulation_steps, world_size
    if accum % n == 0:
        return accum // n
    sequences = cfg.batch_size * accum
    keep = next((a for a in range(n, sequences + 1, n) if sequences % a == 0), None)
    fix = f"--gradient_accumulation_steps={n * -(-accum // n)} (more tokens per step)"
    if keep:
        fix = (f"--batch_size={sequences // keep} --gradient_accumulation_steps={keep} (the same "
               f"{sequences * cfg.block_size:,} tokens per step), or " + fix)
    raise ConfigError(f"gradient_accumulation_steps={accum} counts the micro-batches of all {n} "
                      f"processes together, so it must be a multiple of {n}: pass {fix}")


def parallelize(model, projectors, cfg, device, world_size, dtype, use_compile):
    """The student, built on the meta device, and LET's projectors P made ready for this job in one place, so
    that the model and the training loop know nothing of it: activation checkpointing; under FSDP the student
    and each P with weights sharded (distributed.shard), before any weight exists; the weights allocated and drawn
    (GPT.init_weights: the same weights sharded or not); compiled (each block under FSDP, FSDP's collectives
    between them; else the whole student); under DDP the student and each P with weights wrapped (wrap), so
    that backward averages all their gradients across ranks. Returns (model, P): what the loop calls. The
    modules given stay the unwrapped ones: what is saved, evaluated and sampled."""
    fsdp, ddp = cfg.data_parallel == 'fsdp', world_size > 1 and cfg.data_parallel == 'ddp'
    model.activation_checkpointing = cfg.activation_checkpointing
    if fsdp or ddp:
        from components.distributed import shard, wrap
    if fsdp:  # in place: the parameters become shards (DTensors)
        shard(model, device, world_size, dtype, projectors)
    model.to_empty(device=device)  # the whole student, or this rank's slices of it (FSDP)
    model.init_weights(torch.Generator().manual_seed(cfg.seed))
    if use_compile and fsdp:
        for block in model.transformer.h:
            block.compile()
    elif use_compile:
        model = torch.compile(model)
    if ddp:
        model = wrap(model, device)
        if projectors is not None:  # LET's learned P too ('interp' has no parameters to average)
            projectors = [wrap(P, device) if list(P.parameters()) else P for P in projectors]
    return model, projectors


def grad_norm(grads):
    """The L2 norm of all gradients as one vector, the same on every rank: the root of the sum of squares, each
    part from one foreach norm per device and dtype, as clip_grad_norm_ computes it. A replicated gradient (DDP's,
    the projector's: averaged already) is whole on every rank, counted once; a sharded one (FSDP's DTensor) holds
    one slice per rank: the slices' squares are summed across ranks. torch's clip_grad_norm_ cannot mix the two."""
    shards = [g.to_local() for g in grads if isinstance(g, DTensor)]
    squares = torch.nn.utils.get_total_norm([g for g in grads if not isinstance(g, DTensor)]).float().square()
    if shards:
        sharded = torch.nn.utils.get_total_norm(shards).float().square()
        dist.all_reduce(sharded, op=dist.ReduceOp.SUM)
        squares = sharded + squares
    return squares.sqrt()


class NonFiniteSteps:
    """The policy for steps that optimizer_step skipped (non-finite loss or gradient). Counted on the device,
    so that no step waits for the host: counts = (in all, in a row now, most in a row since the last check).
    check() reads them at train.py's log lines: it reports new skips and stops the run after `limit` in a
    row, saying which checkpoint is kept."""

    def __init__(self, device, limit, ckpt_path):
        self.counts = torch.zeros(3, device=device)
        self.limit, self.ckpt_path, self.reported = limit, ckpt_path, None

    def count(self, skipped):
        """skipped: 1.0 for a skipped step, 0.0 otherwise (a device tensor)."""
        total, row, most = self.counts
        row = (row + 1) * skipped
        self.counts = torch.stack([total + skipped, row, torch.maximum(most, row)])

    def check(self, counts, it, say):
        """counts: self.counts as read by the caller (with its log line's other numbers, in one read); it: the
        last step. Returns the skips in all."""
        total, _, most = (int(c) for c in counts)
        if most >= self.limit:
            kept = "no checkpoint had been written yet"
            if os.path.exists(self.ckpt_path):
                kept = f"the last good checkpoint {self.ckpt_path} is intact"
            raise RuntimeError(f"{most} non-finite steps in a row at iteration {it}: training stopped; {kept}. "
                               f"Lower learning_rate, raise warmup_iters or check the data, then run again to "
                               f"resume")
        if self.reported is not None and total > self.reported:
            say(f"step {it}: {total - self.reported} step(s) skipped since the last log line: non-finite loss "
                f"or gradient ({total} in all)")
        self.reported = total
        self.counts[2] = self.counts[1]  # the most in a row, from the row now on
        return total


def optimizer_step(optimizer, scaler, grad_clip, loss, distributed):
    """Clips and applies the accumulated gradients, unless the loss or a gradient is non-finite: then the
    step is skipped and the weights and AdamW state stay as they were. Decided on the device, without a host
    sync: fused AdamW reads a found_inf flag (as GradScaler uses it) and leaves every tensor, its step count
    included, untouched where it is 1. The gradient norm is the same on every rank (grad_norm) and the flag
    is reduced across ranks, so all ranks decide alike and none waits forever.
    Returns (skipped, grad_norm), device tensors (skipped: 1.0 for a skipped step); the gradients are
    cleared either way."""
    if not optimizer.defaults.get('fused'):
        raise ValueError("optimizer_step skips non-finite steps on the device: it needs fused AdamW")
    scaler.unscale_(optimizer)  # fp16: the true gradients, and the scaler's own overflow check for update()
    grads = [p.grad for group in optimizer.param_groups for p in group['params']
             if p.grad is not None]
    norm = grad_norm(grads)
    if grad_clip > 0:
        scale = (grad_clip / (norm + 1e-6)).clamp(max=1.0)  # as torch's clip_grad_norm_
        torch._foreach_mul_([g.to_local() if isinstance(g, DTensor) else g for g in grads], scale)
    skipped = (~torch.isfinite(norm) | ~torch.isfinite(loss)).float()
    if distributed:
        dist.all_reduce(skipped, op=dist.ReduceOp.MAX)
    # stepped here, not by scaler.step(), which would replace found_inf with the scaler's own flag
    optimizer.found_inf = skipped
    optimizer.step()
    del optimizer.found_inf
    scaler.update()  # fp16: an overflow lowers the loss scale
    optimizer.zero_grad(set_to_none=True)
    return skipped, norm
