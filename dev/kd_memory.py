"""distill.kd_loss's memory and time against the unchunked formula it replaced, forward + backward, side by side.

    python -m dev.kd_memory [--tokens 4096] [--vocab 49152] [--width W] [--dtype float32] [--device cpu]

Extra peak memory is what a call and its backward hold above their inputs and the student's gradient (which
the training step needs anyway), shown in bytes and in (tokens, V) fp32 tensors: the unchunked formula holds
~4 of them (both fp32 log-softmaxes, kept for backward, and the gradients backward passes through them),
13 GB at the paper's 1.4B config (B 8, T 2048, V 49,152). Each measurement runs in a fresh process: on a CPU
its peak resident set (ru_maxrss) is the only peak there is, and it only ever rises; on CUDA the allocator's own
peak counts.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# every allocation over 64 KiB gets its own mapping, returned to the system when freed: the resident set then
# follows live memory instead of glibc's heap, whose freed chunks stay resident and make the peak depend on history
ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')


def reference_kd_loss(student_logits, teacher_logits, vocab_size, temperature=1.0):
    """distill.kd_loss before it was chunked: whole fp32 (B, T, V) log-softmaxes of both, autograd through them."""
    tau = temperature
    log_p_student = F.log_softmax(student_logits[..., :vocab_size].float() / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits[..., :vocab_size].float() / tau, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction='sum')  # sum_v p_t log(p_t/p_s)
    return tau ** 2 * kl / log_p_student[..., 0].numel()


def implementation(name):
    if name == 'reference':
        return reference_kd_loss
    from distill import kd_loss
    return kd_loss


def inputs(tokens, vocab, width, dtype, device, seed=0):
    """Student logits (one batch row of `tokens`, needing a gradient) and a frozen teacher's; a few units apart,
    as trained models' logits are."""
    g = torch.Generator(device=device).manual_seed(seed)
    dtype = getattr(torch, dtype)
    student = torch.randn(1, tokens, width, generator=g, device=device, dtype=dtype).mul_(3).requires_grad_()
    teacher = torch.randn(1, tokens, width, generator=g, device=device, dtype=dtype).mul_(3)  # no temporaries
    return student, teacher


def resident_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure_here(name, tokens, vocab, width, dtype='float32', device='cpu', temperature=2.0, repeats=1):
    """In this process: extra peak bytes of forward + backward and the best time of `repeats`."""
    kd = implementation(name)
    device = torch.device(device)
    cuda = device.type == 'cuda'
    warm_s, warm_t = inputs(8, vocab, width, dtype, device)  # kernels, thread pools: loaded before the baseline
    kd(warm_s, warm_t, vocab, temperature).backward()
    del warm_s, warm_t
    student, teacher = inputs(tokens, vocab, width, dtype, device)
    grad_bytes = student.numel() * student.element_size()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = resident_bytes()
        assert peak_bytes() < base + 64 * 2 ** 20, "the baseline is not this process's peak so far"
    times = []
    for _ in range(repeats):
        student.grad = None  # no gradient accumulation: each repeat allocates the same
        t0 = time.perf_counter()
        kd(student, teacher, vocab, temperature).backward()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if cuda else peak_bytes()
    extra = peak - base - grad_bytes
    return dict(impl=name, tokens=tokens, vocab=vocab, extra_bytes=extra, extra_tensors=extra / (tokens * vocab * 4),
                seconds=min(times))


def measure(name, tokens=4096, vocab=49152, width=None, dtype='float32', device='cpu', temperature=2.0, repeats=1):
    """measure_here in a fresh process (python -m dev.kd_memory --child NAME ...): its peak is this call's."""
    cmd = [sys.executable, '-m', 'dev.kd_memory', '--child', name, '--tokens', str(tokens), '--vocab', str(vocab),
           '--width', str(width or vocab), '--dtype', dtype, '--device', device, '--temperature', str(temperature),
           '--repeats', str(repeats)]
    out = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def differences(tokens, vocab, width, dtype, device, temperature):
    """Max |loss difference| and max |gradient difference| between distill.kd_loss and the reference."""
    results = []
    for name in ('reference', 'let'):
        student, teacher = inputs(tokens, vocab, width, dtype, device)
        loss = implementation(name)(student, teacher, vocab, temperature)
        loss.backward()
        results.append((loss.detach(), student.grad))
        del student, teacher, loss
    (loss_r, grad_r), (loss_l, grad_l) = results
    return (loss_r - loss_l).abs().item(), (grad_r.float() - grad_l.float()).abs().max().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tokens', type=int, default=4096)
    p.add_argument('--vocab', type=int, default=49152, help="the tokenizer's vocabulary (SmolLM2's: 49,152)")
    p.add_argument('--width', type=int, default=None, help='the logits width, >= vocab (a padded vocabulary)')
    p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'), help='the logits dtype')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--temperature', type=float, default=2.0)
    p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--child', choices=('reference', 'let'), help=argparse.SUPPRESS)
    a = p.parse_args()
    width = a.width or a.vocab
    if a.child:
        print(json.dumps(measure_here(a.child, a.tokens, a.vocab, width, a.dtype, a.device, a.temperature,
                                      a.repeats)))
        return
    one = a.tokens * a.vocab * 4
    print(f"kd_loss forward + backward, {a.tokens} tokens, V {a.vocab} (width {width}), {a.dtype} logits, "
          f"tau {a.temperature}, on {a.device} ({torch.get_num_threads()} threads); "
          f"one (tokens, V) fp32 tensor = {one / 1e6:.0f} MB")
    print(f"{'':<22}{'extra peak (bytes)':>20}{'x (tokens, V) fp32':>20}{'time (s)':>10}")
    for name, label in (('reference', 'reference (unchunked)'), ('let', 'distill.kd_loss')):
        r = measure(name, a.tokens, a.vocab, width, a.dtype, a.device, a.temperature, a.repeats)
        print(f"{label:<22}{r['extra_bytes']:>20,}{r['extra_tensors']:>20.2f}{r['seconds']:>10.3f}")
    d_loss, d_grad = differences(a.tokens, a.vocab, width, a.dtype, a.device, a.temperature)
    print(f"max |loss difference| {d_loss:.3g}, max |gradient difference| {d_grad:.3g}")


if __name__ == '__main__':
    main()
