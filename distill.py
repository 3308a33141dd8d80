"""
The paper's two distillation baselines for LET (let.py), from the same small teacher but built on its
next-token distribution instead of its hidden state: SALT (Rawat et al. 2024, arXiv 2410.18779) distills in
an early phase, then trains plain; RKD ("reverse" KD) distills from the smaller teacher throughout. train.py
adds a third term to the loss, w(s) * L_KD; the settings are kd_lambda (w0), kd_stop, kd_schedule and
kd_temperature.
"""

import itertools

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from let import let_lambda

KD_SCHEDULES = ('step', 'linear')


def kd_weight(step, weight0, stop, schedule='linear'):
    """w(s), the weight of L_KD at step s; stop is SALT's n_KD, the length of its distillation phase.

    'step':   w(s) = w0 for s < n_KD, then 0. SALT as published (Rawat et al. 2024, arXiv 2410.18779): KD from the
              small model for the first n_KD steps, then plain next-token training (36K of ~208K steps in its
              main runs, as its reviewers report; docs/training.md).
    'linear': w(s) = w0 * max(0, 1 - s / n_KD), shaped like LET's lambda(s): this repository's first SALT-style
              baseline, kept so that its recorded results can be rerun.
    stop = 0: w(s) = w0 for the whole run (RKD), whatever the schedule.
    train.py adds w(s) * L_KD to L_NLL; for how w0 relates to a convex mix (1 - omega) L_NLL + omega L_KD, see
    docs/training.md.
    """
    if schedule not in KD_SCHEDULES:
        raise ValueError(f"kd_schedule={schedule!r}: use one of {KD_SCHEDULES}")
    if stop == 0:
        return weight0
    if schedule == 'step':
        return weight0 if step < stop else 0.0
    return let_lambda(step, weight0, stop)


# A chunk's fp32 (tokens, vocab) temporaries are this many bytes each, and kd_loss holds about three at once: at
# V 49,152 that is 341 tokens a chunk and ~200 MB in all, against 4 whole (B, T, V) fp32 tensors (13 GB at the
# paper's 1.4B config, B 8, T 2048) for the unchunked formula; 64 MiB still keeps a GPU's kernels long.
KD_CHUNK_BYTES = 64 * 2 ** 20


def kd_loss(student_logits, teacher_logits, vocab_size, temperature=1.0, *, chunk_tokens=None):
    """L_KD = tau^2 * KL(p_teacher || p_student), both softened by temperature tau, averaged over tokens.
    The tau^2 factor (Hinton et al. 2015) keeps the gradient's scale the same for every tau; at tau = 1
    the target is the teacher's own distribution. Only the tokenizer's vocab_size ids take part: the
    rest of a padded vocabulary never occurs in the data.

    student_logits, teacher_logits: (B, T, >= vocab_size), any float dtype (the math is fp32); the teacher's
    come from a frozen teacher under no_grad and get no gradient. The loss is computed chunk_tokens tokens at
    a time (default: by KD_CHUNK_BYTES), forward and backward, so its memory beyond the inputs and the
    student's gradient stays a few chunks however long the batch.
    """
    if teacher_logits.requires_grad and torch.is_grad_enabled():
        raise ValueError("kd_loss: the teacher's logits must come from a frozen teacher under no_grad; "
                         "they get no gradient")
    if student_logits.shape[:-1] != teacher_logits.shape[:-1]:
        raise ValueError(f"kd_loss: student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in their tokens")
    rows = chunk_tokens or max(1, KD_CHUNK_BYTES // (4 * vocab_size))
    return _ChunkedKD.apply(student_logits, teacher_logits, vocab_size, float(temperature), rows)


def _row_blocks(tensors, rows):
    """Matching (<= rows, width) views of the tensors' tokens, in order, never a copy: reshaping a view whose
    leading dims do not merge (a transposed batch, say) would copy a whole (B, T, V) tensor."""
    try:
        flats = [x.view(-1, x.shape[-1]) for x in tensors]
    except RuntimeError:  # walk the leading dims one (T, V) plane at a time; a 2-D view always merges
        for idx in itertools.product(*(range(d) for d in tensors[0].shape[:-2])):
            yield from _row_blocks([x[idx] for x in tensors], rows)
        return
    for r0 in range(0, flats[0].shape[0], rows):
        yield [x[r0:r0 + rows] for x in flats]


class _ChunkedKD(torch.autograd.Function):
    """kd_loss, a chunk of tokens at a time. Only the inputs (which exist anyway) are saved; backward
    recomputes each chunk's softmaxes. With z = s / tau, dKL/dz = p_s - p_t, so
    d L_KD / d s = tau^2 / n * (p_s - p_t) / tau = tau * (p_s - p_t) / n."""

    @staticmethod
    def forward(ctx, student, teacher, vocab_size, tau, rows):
        ctx.save_for_backward(student, teacher)
        ctx.vocab_size, ctx.tau, ctx.rows = vocab_size, tau, rows
        total = torch.zeros((), dtype=torch.float32, device=student.device)
        for s, t in _row_blocks((student, teacher), rows):
            log_p_s = F.log_softmax(s[:, :vocab_size].float() / tau, dim=-1)
            log_p_t = F.log_softmax(t[:, :vocab_size].float() / tau, dim=-1)
            log_ratio = log_p_s.neg_().add_(log_p_t)  # in place: one fewer chunk-sized temporary
            total += log_p_t.exp_().mul_(log_ratio).sum()  # sum_v p_t log(p_t / p_s), this chunk's tokens
        n_tokens = student[..., 0].numel()
        return tau ** 2 * total / n_tokens

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        student, teacher = ctx.saved_tensors
        V, tau = ctx.vocab_size, ctx.tau
        grad = torch.empty(student.shape, dtype=student.dtype, device=student.device)
        grad[..., V:].zero_()  # the padded ids take no part in the loss
        scale = grad_output.float() * (tau / student[..., 0].numel())
        for s, t, g in _row_blocks((student, teacher, grad), ctx.rows):
            p_s = F.softmax(s[:, :V].float() / tau, dim=-1)
            p_t = F.softmax(t[:, :V].float() / tau, dim=-1)
            g[:, :V].copy_(p_s.sub_(p_t).mul_(scale))  # tau * (p_s - p_t) / n * grad_output
        return grad, None, None, None, None
