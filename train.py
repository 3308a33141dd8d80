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

import numpy as np
import torch
import torch.distributed as dist

from checkpoint import FORMAT, check_resume, check_shared, check_writable, load_checkpoint, save_checkpoint
from checkpoint import checkpoint_path, find_checkpoint, load_scaler, load_sharded, save_sharded, truncate_log
from configurator import ConfigError, TrainConfig, check_config, exit_on_error, load_config
from configurator import model_config
from data.common import TokenWindows, check_dataset, resolve_data_dir
from let import alignment_loss, kd_loss, kd_weight, let_lambda, make_projectors
from model import GPT, padded_vocab
from parallel import all_reduce_grads, init_distributed, micro_steps, optimizer_step, set_gradient_sync
from parallel import shard, wrap
from system import DTYPES, autocast, describe_machine, device_peak_flops, resolve_compile
from system import resolve_device, resolve_dtype
from teacher import check_teacher, load_teacher


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
    if ddp.on:
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

    def weights(it):
        """lambda(s) of LET and w(s) of the distillation at step it."""
        lam = let_lambda(it, cfg.let_lambda, cfg.let_stop) if let_on else 0.0
        w = kd_weight(it, cfg.kd_lambda, cfg.kd_stop) if kd_on else 0.0
        return lam, w

    teacher = None
    if any(weights(iter_num)):
        teacher_dtype = DTYPES[dtype] if device.type == 'cuda' else torch.float32
        try:
            teacher = load_teacher(cfg.teacher, device, teacher_dtype, trust=cfg.trust_checkpoint)
        except (OSError, ValueError, ImportError) as e:
            raise ConfigError(f"teacher={cfg.teacher!r}: {e}") from None
        check_teacher(teacher, meta, cfg.block_size, ckpt and ckpt['projector_width'])
        if use_compile:
            teacher.compile()
        say(f"teacher: {cfg.teacher} ({teacher.n_params / 1e6:.1f}M parameters, "
            f"width {teacher.width}, tokenizer {teacher.tokenizer})")
    calls_before = ckpt.get('teacher_calls', 0) if ckpt else 0  # by teachers already released
    logit_calls_before = ckpt.get('teacher_logit_calls', 0) if ckpt else 0

    # the student, LET's projectors P (one per aligned block k), the optimizer
    with torch.device('meta'):  # shapes only: no process ever allocates more than its own slices
        model = GPT(gptconf)
    model.activation_checkpointing = cfg.activation_checkpointing
    projectors = None
    if let_on:
        d_teacher = teacher.width if teacher else ckpt['projector_width']
        projectors = make_projectors(cfg.let_proj, len(cfg.let_layers), gptconf.n_embd, d_teacher,
                                     seed=cfg.seed + 1).to(device)
    if ckpt and projectors is not None and ckpt['projector_width'] is None:
        raise ConfigError(f"{found} was trained without LET: keep let_lambda=0 to resume")
    if sharded:  # in place, before the optimizer: the parameters become shards (DTensors)
        model = shard(model, device, ddp.world_size, dtype, projectors)
    model.to_empty(device=device)  # the whole student, or this rank's slices of it (FSDP)
    model.init_weights(torch.Generator().manual_seed(cfg.seed))  # the same weights, sharded or not
    if ckpt and not sharded:
        model.load_state_dict(ckpt['model'])
        if projectors is not None:
            projectors.load_state_dict(ckpt['projectors'])
    projector_params = list(projectors.parameters()) if projectors is not None else []
    say(f"student: {model.get_num_params() / 1e6:.2f}M parameters")
    betas = (cfg.beta1, cfg.beta2)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, betas,
                                           extra_params=projector_params)
    scaler = torch.amp.GradScaler(device.type, enabled=(dtype == 'float16'))
    trained = {'student': model, 'projectors': projectors}  # what a sharded checkpoint names
    if ckpt and sharded:
        load_sharded(found, trained, optimizer)  # each rank reads its own shards
    elif ckpt:
        optimizer.load_state_dict(ckpt['optimizer'])
    if ckpt and (change := load_scaler(scaler, ckpt['scaler'])):
        say(f"resuming: {change}")
    raw_model = model  # the student without compile or DDP: what is saved, evaluated and sampled
    if use_compile:
        say("compiling the model...")
        model = torch.compile(model)
    eval_model = model
    if ddp.on and not sharded:
        model = wrap(model, device)

    # MFU: a training step is 3 forwards of the student; the teacher runs one, its head only for KD.
    # Per process: this process's tokens over one device's peak (as nanoGPT's estimate_mfu)
    tokens_per_process = tokens_per_iter // ddp.world_size
    flops_student = 3 * raw_model.forward_flops_per_token(cfg.block_size) * tokens_per_process
    flops_body = flops_head = 0  # of the teacher, per step
    if teacher:
        per_token = teacher.model.forward_flops_per_token(cfg.block_size, head=False)
        flops_body = per_token * tokens_per_process
        with_head = teacher.model.forward_flops_per_token(cfg.block_size) * tokens_per_process
        flops_head = with_head - flops_body
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
            for k in range(cfg.eval_iters * accum):
                first = (k * ddp.world_size + ddp.rank) * cfg.batch_size
                X, Y = get_batch(split, splits[split].eval_windows(first, cfg.batch_size, total))
                with ctx:
                    _, losses[k] = eval_model(X, Y)
            mean = losses.mean()
            if ddp.on:
                dist.all_reduce(mean, op=dist.ReduceOp.AVG)
            out[split] = mean.item()
        raw_model.train()
        return out

    def teacher_calls():
        return calls_before + (teacher.calls if teacher else 0)

    def teacher_logit_calls():
        return logit_calls_before + (teacher.logit_calls if teacher else 0)

    def checkpoint_state():
        """The checkpoint; sharded (FSDP), without weights and optimizer: save_sharded adds them."""
        state = {'format': FORMAT, 'iter_num': iter_num, 'config': dataclasses.asdict(cfg),
                 'model_args': dataclasses.asdict(gptconf), 'tokenizer': meta['tokenizer'],
                 'projector_width': projectors[0].d_teacher if projectors is not None else None,
                 'scaler': scaler.state_dict(), 'teacher_calls': teacher_calls(),
                 'teacher_logit_calls': teacher_logit_calls(),
                 'best_val_loss': best_val_loss, 'train_time': train_time}
        if not sharded:
            state.update(model=raw_model.state_dict(), optimizer=optimizer.state_dict(),
                         projectors=projectors.state_dict() if projectors is not None else None)
        return state

    def log(record):
        if master:
            with open(log_path, 'a') as f:
                f.write(json.dumps(record) + '\n')

    best_val_loss = ckpt['best_val_loss'] if ckpt else float('inf')
    train_time = ckpt['train_time'] if ckpt else 0.0  # seconds in training steps, not eval or save
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
    nonfinite_in_a_row, skipped_total = 0, 0
    zero = torch.zeros((), device=device)
    interval_sums, n_interval = torch.zeros(5, device=device), 0  # loss, lm, align, cos, kd
    k, P = cfg.let_layers, projectors  # the paper's names for the aligned blocks and the projector
    t_start = time.time()

    # ----------------------------------------------------------------------------- training loop
    while True:
        # evaluate, log and checkpoint every eval_interval steps and at the end
        due = iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters
        just_resumed = resume and iter_num == start_iter  # its eval was logged before the save
        if cfg.eval_only or (due and not just_resumed):
            losses = estimate_loss()
            lam, w = weights(iter_num)
            log({'event': 'eval', 'iter': iter_num, 'tokens': iter_num * tokens_per_iter,
                 'train_time': round(train_time, 3), 'wall_time': round(time.time() - t_start, 3),
                 'train_loss': losses['train'], 'val_loss': losses['val'],
                 'lambda': lam, 'kd_weight': w})
            write(f"step {iter_num}: train loss {losses['train']:.4f}, val {losses['val']:.4f}")
            if cfg.eval_only:
                break
            improved = losses['val'] < best_val_loss
            best_val_loss = min(best_val_loss, losses['val'])
            if iter_num > start_iter and (improved or cfg.always_save_checkpoint):
                if sharded:  # every rank writes its shards
                    save_sharded(ckpt_path, checkpoint_state(), trained, optimizer)
                elif master:
                    save_checkpoint(ckpt_path, checkpoint_state())
        if iter_num >= cfg.max_iters:
            break

        lam, w = weights(iter_num)  # lambda(s), w(s)
        if teacher and lam == 0 and w == 0:  # S_stop: the teacher goes, outside the timed step
            calls_before, logit_calls_before = teacher_calls(), teacher_logit_calls()
            teacher.release()
            teacher = None
            say(f"step {iter_num}: S_stop reached, teacher released")

        t0 = time.time()
        lr = get_lr(cfg, iter_num)
        for group in optimizer.param_groups:
            group['lr'] = lr
        torch.manual_seed(step_seed(cfg.seed, ddp.rank, iter_num))
        step_sums = torch.zeros(5, device=device)
        for micro_step in range(accum):
            # each process's micro-step reads its own slice of the step's samples
            slot = micro_step * ddp.world_size + ddp.rank
            first = iter_num * global_batch + slot * cfg.batch_size
            X, Y = get_batch('train', splits['train'].train_windows(first, cfg.batch_size))
            last = micro_step == accum - 1  # gradients are averaged across ranks once, at the end
            set_gradient_sync((model, raw_model, *(P or ())), last)
            with ctx:
                logits, lm_loss, h_students = model(X, Y, hidden_layers=k if lam > 0 else ())
                loss, align_loss, cos, kd = lm_loss, zero, zero, zero
                if lam > 0 or w > 0:  # one teacher forward for both terms; logits only for KD
                    h_teacher, logits_teacher = teacher(X, logits=w > 0)  # (B, T, d_t), no grad
                if lam > 0:
                    # ------------------------------------------------------------------------ LET
                    # h_students: the residual streams after blocks k, (B, T, d_s)
                    align_loss, cos = alignment_loss(h_students, h_teacher, P, cfg.let_loss)
                    loss = loss + lam * align_loss  # L_total = L_NLL + lambda(s) * L_align
                    # ----------------------------------------------------------------------------
                if w > 0:  # distillation, the paper's baselines: SALT (kd_stop > 0), RKD (= 0)
                    kd = kd_loss(logits, logits_teacher, meta['vocab_size'], cfg.kd_temperature)
                    loss = loss + w * kd  # ... + w(s) * L_KD
            step_sums += torch.stack([loss, lm_loss, align_loss, cos, kd]).detach() / accum
            scaler.scale(loss / accum).backward()
            # freed now, not at the next forward: (B, T, vocab) logits, and every teacher output at S_stop
            logits = h_students = h_teacher = logits_teacher = None
        if ddp.on and not sharded and lam > 0:
            all_reduce_grads(projector_params)  # DDP averages the student's gradients, not P's
        stepped, grad_norm = optimizer_step(optimizer, scaler, cfg.grad_clip, step_sums[0], ddp.on)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)  # honest step times
        dt = time.time() - t0
        train_time += dt
        iter_num += 1
        if progress:
            progress.update(1)

        if stepped:
            nonfinite_in_a_row = 0
        else:
            nonfinite_in_a_row += 1
            skipped_total += 1
            write(f"step {iter_num - 1}: non-finite loss or gradient, step skipped "
                  f"({nonfinite_in_a_row} in a row, {skipped_total} in all)")
            if nonfinite_in_a_row >= cfg.max_nonfinite_steps:
                kept = "no checkpoint had been written yet"
                if os.path.exists(ckpt_path):
                    kept = f"the last good checkpoint {ckpt_path} is intact"
                raise RuntimeError(f"{nonfinite_in_a_row} non-finite steps in a row at iteration "
                                   f"{iter_num - 1}: training stopped; {kept}. Lower "
                                   f"learning_rate, raise warmup_iters or check the data, then run "
                                   f"again to resume")

        # one log line per interval: losses averaged over its steps, the speed of its last step
        interval_sums += step_sums
        n_interval += 1
        if iter_num % cfg.log_interval == 0 or iter_num == cfg.max_iters:
            loss_f, lm_f, align_f, cos_f, kd_f = (interval_sums / n_interval).tolist()
            interval_sums.zero_()
            n_interval = 0
            flops_teacher = (flops_body if lam > 0 or w > 0 else 0) + (flops_head if w > 0 else 0)
            flops = flops_student + flops_teacher
            cuda = device.type == 'cuda'
            log({'event': 'train', 'iter': iter_num, 'loss': loss_f, 'lm_loss': lm_f,
                 'align_loss': align_f, 'cos': cos_f, 'lambda': lam, 'kd_loss': kd_f,
                 'kd_weight': w, 'lr': lr,
                 'grad_norm': grad_norm.item(), 'dt_ms': dt * 1000,
                 'tok_per_s': tokens_per_iter / dt,
                 'mfu': flops_student / dt / peak if peak else None,
                 'mfu_with_teacher': flops / dt / peak if peak else None,
                 'teacher_calls': teacher_calls(), 'teacher_logit_calls': teacher_logit_calls(),
                 'skipped': skipped_total,
                 'flops_student': flops_student, 'flops_teacher': flops_teacher,
                 'cuda_mem_gb': torch.cuda.memory_allocated(device) / 2**30 if cuda else None,
                 'cuda_peak_gb': torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None})
            line = f"iter {iter_num}: loss {lm_f:.4f}"
            if let_on:
                line += f", align {align_f:.4f}, cos {cos_f:.3f}, lambda {lam:.3g}"
            if kd_on:
                line += f", kd {kd_f:.4f}, w {w:.3g}"
            line += f", lr {lr:.2e}, time {dt * 1000:.0f}ms, {tokens_per_iter / dt:,.0f} tok/s"
            if peak:
                line += f", mfu {flops_student / dt / peak * 100:.1f}%"
            if peak and flops_teacher:
                line += f" ({flops / dt / peak * 100:.1f}% with teacher)"
            write(line)
    if progress:
        progress.close()
    if ddp.on:
        dist.destroy_process_group()


if __name__ == '__main__':
    exit_on_error(main, sys.argv[1:])
