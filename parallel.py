"""
Data parallelism for train.py: the process group torchrun asks for, the student's wrapper, and the two places
where ranks must agree by hand: the gradients of parameters outside the wrapper (LET's projector) and the
decision to take or skip an optimizer step.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import ConfigError


@dataclass
class Dist:
    """This process's place in the job; on: launched by torchrun (a process group exists)."""
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    on: bool = False


def init_distributed(device, backend=''):
    """Joins the process group when torchrun started this process (it sets RANK, LOCAL_RANK, WORLD_SIZE).
    Returns (Dist, device): on CUDA, each process takes the GPU of its local rank."""
    if 'RANK' not in os.environ:
        return Dist(), device
    d = Dist(int(os.environ['RANK']), int(os.environ['LOCAL_RANK']), int(os.environ['WORLD_SIZE']), on=True)
    if device.startswith('cuda'):
        device = f'cuda:{d.local_rank}'
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend or ('nccl' if device.startswith('cuda') else 'gloo'))
    return d, device


def micro_steps(cfg, world_size):
    """Micro-steps per process: gradient_accumulation_steps counts those of all processes together, so a config
    means the same tokens per step on 1 or 8 GPUs. When it does not divide, the error says what to pass."""
    accum, n = cfg.gradient_accumulation_steps, world_size
    if accum % n == 0:
        return accum // n
    sequences = cfg.batch_size * accum
    keep = next((a for a in range(n, sequences + 1, n) if sequences % a == 0), None)
    fix = f"--gradient_accumulation_steps={n * -(-accum // n)} (more tokens per step)"
    if keep:
        fix = (f"--batch_size={sequences // keep} --gradient_accumulation_steps={keep} (the same "
               f"{sequences * cfg.block_size:,} tokens per step), or " + fix)
    raise ConfigError(f"gradient_accumulation_steps={accum} counts the micro-batches of all {n} processes "
                      f"together, so it must be a multiple of {n}: pass {fix}")


def wrap(model, device):
    """DDP: every rank holds the whole student; gradients are averaged across ranks during backward.
    broadcast_buffers=False: the only buffers are rotary tables, identical on every rank."""
    return DDP(model, device_ids=[device.index] if device.type == 'cuda' else None, broadcast_buffers=False)


def all_reduce_grads(params):
    """Averages the gradients of parameters that no wrapper averages (LET's projector), in one collective."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.AVG)
    for g, avg in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(avg.view_as(g))


def optimizer_step(optimizer, scaler, grad_clip, loss, distributed):
    """Clips and applies the accumulated gradients, unless the loss or a gradient is non-finite: then the step is
    skipped and the weights and optimizer state stay as they were. The gradient norm is the same on every rank
    (the gradients were averaged) and the loss flag is reduced across ranks, so all ranks decide alike and none
    waits forever. Returns (stepped, grad_norm); the gradients are cleared either way."""
    scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group['params'] if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float('inf'))
    bad = (~torch.isfinite(grad_norm) | ~torch.isfinite(loss)).float()
    if distributed:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    stepped = not bad.item()  # the step's one host sync
    if stepped:
        scaler.step(optimizer)
    scaler.update()  # fp16: a skipped step lowers the loss scale, as an overflow should
    optimizer.zero_grad(set_to_none=True)
    return stepped, grad_norm
