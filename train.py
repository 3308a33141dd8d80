"""
Trains a GPT, optionally with Late-to-Early Training (LET, arXiv 2602.05393; the idea is in let.py):
a small, long-trained teacher guides an early block k of the student during the first S_stop steps.
The LET lines are in the training loop below, fenced "LET".

$ python train.py config/train_shakespeare_byte.py     # plain training; a CPU is enough
$ python train.py config/let_shakespeare.py            # LET; first config/teacher_shakespeare.py
$ torchrun --standalone --nproc_per_node=8 train.py config/let_pile.py      # 8 GPUs
$ torchrun --nnodes=4 --nproc_per_node=8 ... train.py config/let_pile_7b.py   # 32 GPUs, FSDP

The settings are TrainConfig in configurator.py: a config file overrides some, --key=value those.
Re-running a command after a crash continues from out_dir/ckpt.pt (FSDP: the folder out_dir/ckpt)
exactly (init_from='auto'); torchrun --max-restarts does it by itself (docs/scale.md).
"""

import dataclasses
import json
import math
import os
import sys
import time
import uuid

import numpy as np
import torch
import torch.distributed as dist

from components.checkpoint import (FORMAT, check_resume, check_writable, checkpoint_path, find_checkpoint,
                                   load_checkpoint, load_scaler, save_checkpoint, truncate_log)
from components.runtime import (DTYPES, NonFiniteSteps, Stopwatch, autocast, describe_machine, device_peak_flops,
                                init_distributed, micro_steps, optimizer_step, parallelize, resolve_compile,
                                resolve_device, resolve_dtype)
from configurator import ConfigError, TrainConfig, check_config, exit_on_error, load_config, model_config
from data.common import TokenWindows, check_dataset, resolve_data_dir
from model import GPT, padded_vocab


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


def step_seed(seed, rank, it):
    """Dropout's random stream for one step of one rank, a pure function of (seed, rank, step):
    a resumed run draws what the uninterrupted run would have drawn, with no state to save."""
    return int(np.random.SeedSequence([seed, rank, it]).generate_state(1)[0])


def step_flops(model, teacher, block_size, tokens):
    """FLOPs of one training step on `tokens` tokens: (the student's, the teacher's forward for LET alone, its
    forward with logits for KD). The student's step is 3 forwards (backward = 2); the teacher runs one forward:
    for LET alone only as far as its layer (all of its blocks for the final state, blocks 0..j for block j), with
    KD all of it and its head. MFU divides one process's FLOPs by one device's peak, as nanoGPT's estimate_mfu
    does."""
    student = 3 * model.forward_flops_per_token(block_size) * tokens
    if teacher is None:
        return student, 0, 0
    blocks = None if teacher.layer == -1 else teacher.layer + 1
    hidden = teacher.model.forward_flops_per_token(block_size, head=False, blocks=blocks) * tokens
    return student, hidden, teacher.model.forward_flops_per_token(block_size) * tokens


def warm_up(model, teacher, X, Y, k, logits, ctx, optimizer):
    """Builds torch.compile's graphs before the clock starts, so that step times and train_time exclude
    compilation: one training forward and backward on the first batch (its gradients thrown away, no step),
    the teacher's forward, one evaluation forward."""
    with ctx:
        model(X, Y, hidden_layers=k)[1].backward()
        if teacher:
            teacher(X, logits)  # not counted in the log's teacher calls
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad(), ctx:
        model(X, Y)
    model.train()


def start_wandb(cfg):
    """nanoGPT's wandb_log, for the master process: one wandb run per out_dir, its id kept in out_dir/wandb_id so
    that a resumed run continues it. Its steps are the iterations; a resume repeats the steps after the checkpoint
    with the same numbers (resumes are exact), which wandb keeps once."""
    import wandb
    id_path = os.path.join(cfg.out_dir, 'wandb_id')
    run_id = open(id_path).read() if os.path.exists(id_path) else uuid.uuid4().hex[:8]
    with open(id_path, 'w') as f:
        f.write(run_id)
    return wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name or os.path.basename(os.path.abspath(
        cfg.out_dir)), id=run_id, resume='allow', config=dataclasses.asdict(cfg))


def main(argv):
    cfg = load_config(TrainConfig, argv)
    check_config(cfg)

    # where: the processes, the device, the precision
    ddp, device_name = init_distributed(resolve_device(cfg.device), cfg.backend, cfg.data_parallel)
    device = torch.device(device_name)
    master = ddp.rank == 0

    def say(*args):
        if master:
            print(*args, flush=True)

    accum = micro_steps(cfg, ddp.world_size)  # per process
    global_batch = cfg.batch_size * cfg.gradient_accumulation_steps  # sequences per step, in all
    tokens_per_iter = global_batch * cfg.block_size
    say(f"tokens per iteration: {tokens_per_iter:,} ({ddp.world_size} processes x {accum} "
        f"micro-steps x {cfg.batch_size} x {cfg.block_size})")
    dtype = resolve_dtype(cfg.dtype, device.type, fsdp=cfg.data_parallel == 'fsdp')
    ctx = autocast(device.type, dtype)
    use_compile = resolve_compile(cfg.compile, device.type)
    say(f"machine: {describe_machine(device)}; dtype {dtype}; compile {use_compile}")
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    check_writable(cfg.out_dir, ddp.rank)
    if ddp.on:  # torchrun's processes: what only they run is in components/distributed.py
        from components.distributed import check_shared, load_sharded, save_sharded, set_gradient_sync
        check_shared(cfg.out_dir, ddp.rank, ddp.world_size)
    sharded = cfg.data_parallel == 'fsdp'  # FSDP: weights, gradients and AdamW state sharded
    ckpt_path = checkpoint_path(cfg.out_dir, sharded)  # ckpt.pt, or FSDP's folder of shards ckpt/
    found = find_checkpoint(ckpt_path)
    log_path = os.path.join(cfg.out_dir, 'log.jsonl')

    # data: a step reads the same windows whatever the number of processes (data/common.py)
    data_dir = resolve_data_dir(cfg.dataset)
    meta = check_dataset(data_dir)
    splits = {split: TokenWindows(os.path.join(data_dir, f'{split}.bin'), cfg.block_size, cfg.seed,
                                  meta['dtype'])  # uint16 or uint32 ids
              for split in ('train', 'val')}

    def get_batch(split, windows):
        x, y = (torch.from_numpy(a) for a in splits[split].read(windows))
        if device.type == 'cuda':  # pinned memory: the copy overlaps with the GPU's work
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    # the checkpoint to continue: 'auto' resumes when there is one, 'scratch' never overwrites one
    resume = cfg.init_from == 'resume' or (cfg.init_from == 'auto' and found is not None)
    if cfg.init_from == 'scratch' and found:
        raise ConfigError(f"{found} exists and init_from='scratch' would overwrite it; use "
                          f"init_from='auto' to continue it, or another out_dir")
    if cfg.init_from == 'resume' and not found:
        raise ConfigError(f"init_from='resume' but {ckpt_path} does not exist")
    gptconf = model_config(cfg, padded_vocab(meta['vocab_size']))
    # sharded: all but the weights and the optimizer
    ckpt = load_checkpoint(found, trust=cfg.trust_checkpoint) if resume else None
    if ckpt:
        check_resume(ckpt, found, dataclasses.asdict(gptconf), cfg)
    iter_num = start_iter = ckpt['iter_num'] if ckpt else 0

    # the teacher (LET, KD): frozen, never in the optimizer, a wrapper or a checkpoint
    let_on = bool(cfg.teacher) and cfg.let_lambda > 0  # lambda0 = 0 is plain training, exactly
    kd_on = bool(cfg.teacher) and cfg.kd_lambda > 0
    if let_on:
        from let import alignment_loss, let_lambda, make_projectors
    if kd_on:  # the distillation baselines
        from distill import kd_loss, kd_weight

    def weights(it):
        """lambda(s) of LET and w(s) of the distillation at step it."""
        lam = let_lambda(it, cfg.let_lambda, cfg.let_stop) if let_on else 0.0
        w = kd_weight(it, cfg.kd_lambda, cfg.kd_stop, cfg.kd_schedule) if kd_on else 0.0
        return lam, w

    teacher = None
    if any(weights(iter_num)):
        from teacher import check_teacher, load_teacher
        teacher_dtype = DTYPES[dtype] if device.type == 'cuda' else torch.float32
        try:
            teacher = load_teacher(cfg.teacher, device, teacher_dtype, trust=cfg.trust_checkpoint,
                                   layer=cfg.let_teacher_layer)
        except (OSError, ValueError, ImportError) as e:
            raise ConfigError(f"teacher={cfg.teacher!r}: {e}") from None
        check_teacher(teacher, meta, cfg.block_size, ckpt and ckpt['projector_width'])
        if use_compile:
            teacher.compile()
        say(f"teacher: {cfg.teacher} ({teacher.n_params / 1e6:.1f}M parameters, width {teacher.width}, "
            f"tokenizer {teacher.tokenizer}{'' if teacher.layer == -1 else f', LET aligns at block {teacher.layer}'})")

    # the student, LET's projectors P (one per aligned block k), the optimizer
    with torch.device('meta'):  # shapes only: no process ever allocates more than its own slices
        raw_model = GPT(gptconf)  # the student without compile or DDP: what is saved, evaluated and sampled
    projectors = None
    if let_on:
        d_teacher = teacher.width if teacher else ckpt['projector_width']
        projectors = make_projectors(cfg.let_proj, len(cfg.let_layers), gptconf.n_embd, d_teacher,
                                     seed=cfg.seed + 1).to(device)
    if ckpt and projectors is not None and ckpt['projector_width'] is None:
        raise ConfigError(f"{found} was trained without LET: keep let_lambda=0 to resume")
    if use_compile:  # under FSDP each block, FSDP's gathers and scatters between them
        say("compiling the blocks..." if sharded else "compiling the model...")
    model, P = parallelize(raw_model, projectors, cfg, device, ddp.world_size, dtype, use_compile)
    if ckpt and not sharded:
        raw_model.load_state_dict(ckpt['model'])
        if projectors is not None:
            projectors.load_state_dict(ckpt['projectors'])
    say(f"student: {raw_model.get_num_params() / 1e6:.2f}M parameters")
    optimizer = raw_model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                               extra_params=projectors.parameters() if projectors else ())
    scaler = torch.amp.GradScaler(device.type, enabled=(dtype == 'float16'))
    trained = {'student': raw_model, 'projectors': projectors}  # what a sharded checkpoint names
    if ckpt and sharded:
        load_sharded(found, trained, optimizer)  # each rank reads its own shards
    elif ckpt:
        optimizer.load_state_dict(ckpt['optimizer'])
    if ckpt and (change := load_scaler(scaler, ckpt['scaler'])):
        say(f"resuming: {change}")
    flops = step_flops(raw_model, teacher, cfg.block_size, tokens_per_iter // ddp.world_size)  # per process
    peak = device_peak_flops(device, dtype)
    if peak is None:
        say(f"MFU: not reported (no known peak FLOP/s for {device} in {dtype})")

    @torch.no_grad()
    def estimate_loss():
        """Mean loss per split over the same eval_iters global batches at every evaluation,
        whatever the number of processes."""
        out = {}
        raw_model.eval()
        total = cfg.eval_iters * global_batch  # windows per evaluation
        for split in ('train', 'val'):
            losses = torch.zeros(cfg.eval_iters * accum, device=device)
            for i in range(cfg.eval_iters * accum):
                first = (i * ddp.world_size + ddp.rank) * cfg.batch_size
                X, Y = get_batch(split, splits[split].eval_windows(first, cfg.batch_size, total))
                with ctx:
                    _, losses[i] = model(X, Y)
            mean = losses.mean()
            if ddp.on:
                dist.all_reduce(mean, op=dist.ReduceOp.AVG)
            out[split] = mean.item()
        raw_model.train()
        return out

    def train_batch(it, micro_step):
        """Micro-batch micro_step of step it for this process: its own slice of the step's samples."""
        slot = micro_step * ddp.world_size + ddp.rank
        return get_batch('train', splits['train'].train_windows(it * global_batch + slot * cfg.batch_size,
                                                                cfg.batch_size))

    tracker = start_wandb(cfg) if cfg.wandb_log and master else None

    def log(record):
        if master:
            with open(log_path, 'a') as f:
                f.write(json.dumps(record) + '\n')
        if tracker:  # the same numbers, as 'train/loss', 'eval/val_loss', ...
            tracker.log({f"{record['event']}/{k}": v for k, v in record.items() if k != 'event'}, step=record['iter'])

    def save(it, best_val_loss):
        """The checkpoint of step it: one file (rank 0), or every rank's shards (FSDP)."""
        state = {'format': FORMAT, 'iter_num': it, 'config': dataclasses.asdict(cfg),  # checkpoint.py: FORMAT
                 'model_args': dataclasses.asdict(gptconf), 'tokenizer': meta['tokenizer'],
                 'projector_width': projectors[0].d_teacher if projectors is not None else None,
                 'scaler': scaler.state_dict(), 'teacher_calls': calls[0], 'teacher_logit_calls': calls[1],
                 'best_val_loss': best_val_loss, 'train_time': watch.total}
        if sharded:
            save_sharded(ckpt_path, state, trained, optimizer)
        elif master:
            state.update(model=raw_model.state_dict(), optimizer=optimizer.state_dict(),
                         projectors=projectors.state_dict() if projectors is not None else None)
            save_checkpoint(ckpt_path, state)
        write(f"step {it}: checkpoint saved to {ckpt_path}")

    best_val_loss = ckpt['best_val_loss'] if ckpt else float('inf')
    watch = Stopwatch(device, ckpt['train_time'] if ckpt else 0.0)  # seconds in training steps only
    # the teacher's forwards, and those with logits: none should come after S_stop (and the distillation's stop)
    calls = [ckpt.get('teacher_calls', 0), ckpt.get('teacher_logit_calls', 0)] if ckpt else [0, 0]
    if ckpt:
        say(f"resuming from {ckpt_path} at iteration {iter_num}")
    del ckpt
    if master:
        truncate_log(log_path, iter_num if resume else None)
    progress = None
    if master and cfg.progress and not cfg.eval_only:
        from tqdm import tqdm
        progress = tqdm(total=cfg.max_iters, initial=iter_num, unit='it', dynamic_ncols=True,
                        file=sys.stdout)
    write = progress.write if progress else say
    zero = torch.zeros((), device=device)
    nonfinite = NonFiniteSteps(device, cfg.max_nonfinite_steps, ckpt_path)  # counted on the device
    interval_sums, n_interval = torch.zeros(5, device=device), 0  # loss, lm, align, cos, kd
    # k: the paper's name for the aligned blocks; the student returns the states after blocks k also after
    # S_stop (unused then): one compiled graph for the whole run
    k = cfg.let_layers if let_on else ()
    X, Y = train_batch(iter_num, 0)
    t_start = time.time()
    if use_compile and not cfg.eval_only:  # the graphs are built here, outside the timed steps
        warm_up(model, teacher, X, Y, k, weights(iter_num)[1] > 0, ctx, optimizer)
    evaluations = 0  # since this process started: checkpoint_interval counts them

    # ----------------------------------------------------------------------------- training loop
    while True:
        # evaluate, log and checkpoint every eval_interval steps and at the end
        due = iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters
        just_resumed = resume and iter_num == start_iter  # its eval was logged before the save
        if cfg.eval_only or (due and not just_resumed):
            watch.stop()
            losses = estimate_loss()
            lam, w = weights(iter_num)
            log({'event': 'eval', 'iter': iter_num, 'tokens': iter_num * tokens_per_iter,
                 'train_time': round(watch.total, 3), 'wall_time': round(time.time() - t_start, 3),
                 'train_loss': losses['train'], 'val_loss': losses['val'],
                 'lambda': lam, 'kd_weight': w})
            write(f"step {iter_num}: train loss {losses['train']:.4f}, val {losses['val']:.4f}")
            if cfg.eval_only:
                break
            improved = losses['val'] < best_val_loss
            best_val_loss = min(best_val_loss, losses['val'])
            evaluations += 1
            # saved: the last step; else every checkpoint_interval-th evaluation, or (nanoGPT's) when improved
            due = evaluations % cfg.checkpoint_interval == 0 if cfg.always_save_checkpoint else improved
            if iter_num > start_iter and (due or iter_num == cfg.max_iters):
                save(iter_num, best_val_loss)
        if iter_num >= cfg.max_iters:
            break

        lam, w = weights(iter_num)  # lambda(s), w(s)
        if teacher and lam == 0 and w == 0:  # S_stop: the teacher goes, outside the timed steps
            watch.stop()
            teacher.release()
            teacher = None
            say(f"step {iter_num}: S_stop reached, teacher released")

        watch.start()
        lr = get_lr(cfg, iter_num)
        for group in optimizer.param_groups:
            group['lr'] = lr
        torch.manual_seed(step_seed(cfg.seed, ddp.rank, iter_num))
        step_sums = torch.zeros(5, device=device)
        for micro_step in range(accum):
            last = micro_step == accum - 1  # gradients are averaged across ranks once, at the end
            if ddp.on:
                set_gradient_sync((model, raw_model, *(P or ())), last)
            with ctx:
                logits, lm_loss, h_students = model(X, Y, hidden_layers=k)
                loss, align_loss, cos, kd = lm_loss, zero, zero, zero
                if lam > 0 or w > 0:  # one teacher forward for both terms; logits only for KD
                    h_teacher, logits_teacher = teacher(X, logits=w > 0)  # (B, T, d_t), no grad
                    calls[0] += 1
                    calls[1] += w > 0
                if lam > 0:
                    # ------------------------------------------------------------------------ LET
                    # h_students: the residual streams after blocks k, (B, T, d_s)
                    align_loss, cos = alignment_loss(h_students, h_teacher, P, cfg.let_loss)
                    loss = loss + lam * align_loss  # L_total = L_NLL + lambda(s) * L_align
                    # ----------------------------------------------------------------------------
                if w > 0:  # distillation, the paper's baselines: SALT (kd_stop > 0), RKD (= 0)
                    kd = kd_loss(logits, logits_teacher, meta['vocab_size'], cfg.kd_temperature)
                    loss = loss + w * kd  # ... + w(s) * L_KD
            # the next micro-batch, read and sent while the device computes this one
            X, Y = train_batch(iter_num + last, 0 if last else micro_step + 1)
            step_sums += torch.stack([loss, lm_loss, align_loss, cos, kd]).detach() / accum
            scaler.scale(loss / accum).backward()
            # freed now, not at the next forward: (B, T, vocab) logits, and every teacher output at S_stop
            logits = h_students = h_teacher = logits_teacher = None
        skipped, grad_norm = optimizer_step(optimizer, scaler, cfg.grad_clip, step_sums[0], ddp.on)
        nonfinite.count(skipped)  # on the device: read at the log line
        iter_num += 1
        if progress:
            progress.update(1)

        # one log line per interval: losses averaged over its steps, its mean step time
        interval_sums += step_sums
        n_interval += 1
        if iter_num % cfg.log_interval == 0 or iter_num == cfg.max_iters:
            dt = watch.lap() / n_interval  # waits for the device: the interval's steps are done
            read = torch.cat([interval_sums / n_interval, grad_norm.float().view(1), nonfinite.counts]).tolist()
            means, norm, skips = read[:5], read[5], read[6:]  # one read of the device for the whole line
            skipped_total = nonfinite.check(skips, iter_num - 1, write)  # may stop the run
            interval_sums.zero_()
            n_interval = 0
            total, lm, align, cos, kd = means
            flops_teacher = flops[2] if w > 0 else flops[1] if lam > 0 else 0  # the teacher's forward this step
            mfu = flops[0] / dt / peak if peak else None  # MFU: one process's FLOPs over one device's peak
            mfu_all = (flops[0] + flops_teacher) / dt / peak if peak else None
            cuda = device.type == 'cuda'
            log({'event': 'train', 'iter': iter_num, 'loss': total, 'lm_loss': lm, 'align_loss': align, 'cos': cos,
                 'lambda': lam, 'kd_loss': kd, 'kd_weight': w, 'lr': lr, 'grad_norm': norm,
                 'dt_ms': dt * 1000, 'tok_per_s': tokens_per_iter / dt, 'mfu': mfu, 'mfu_with_teacher': mfu_all,
                 'teacher_calls': calls[0], 'teacher_logit_calls': calls[1], 'skipped': skipped_total,
                 'flops_student': flops[0], 'flops_teacher': flops_teacher,
                 'cuda_mem_gb': torch.cuda.memory_allocated(device) / 2**30 if cuda else None,
                 'cuda_peak_gb': torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None})
            line = f"iter {iter_num}: loss {lm:.4f}"
            if let_on:
                line += f", align {align:.4f}, cos {cos:.3f}, lambda {lam:.3g}"
            if kd_on:
                line += f", kd {kd:.4f}, w {w:.3g}"
            line += f", lr {lr:.2e}, time {dt * 1000:.0f}ms, {tokens_per_iter / dt:,.0f} tok/s"
            if peak:
                line += f", mfu {mfu * 100:.1f}%"
            if peak and flops_teacher:
                line += f" ({mfu_all * 100:.1f}% with teacher)"
            write(line)
    if progress:
        progress.close()
    if tracker:
        tracker.finish()
    if ddp.on:
        # DDP's wrappers go first: freed after the process group, they would destroy it themselves, holding
        # Python's lock while gloo's threads may still need it (a hang at exit, pytorch/pytorch#56297)
        del model, P
        dist.destroy_process_group()


if __name__ == '__main__':
    exit_on_error(main, sys.argv[1:])
