"""
Late-to-Early Training (LET, Zhao et al., arXiv 2602.05393): the idea, in one file.

A small teacher that has trained for a long time ("late") guides an early block k of a larger
student during the first S_stop steps of its training ("early"). At step s the loss is

    L_total(s) = L_NLL + lambda(s) * L_align
    L_align    = mean over tokens of 1 - cos(P(h_student_k), h_teacher)    (the paper's -cos, plus 1)
    lambda(s)  = lambda0 * max(0, 1 - s / S_stop)

h_student_k is the student's residual stream after block k (counted from 0), h_teacher the
teacher's last hidden state after its final norm (Hugging Face's hidden_states[-1]). Both read the
same token ids, so they share a tokenizer. P brings the two widths together. From S_stop on,
training is plain next-token prediction and the teacher is gone.

train.py's loop computes these lines; the settings are teacher, let_layers (k), let_proj (P),
let_loss, let_lambda (lambda0) and let_stop (S_stop).

The paper compares LET with two distillation baselines from the same small teacher, both built on the
teacher's next-token distribution instead of its hidden state (kd_loss and kd_weight, at the end):
SALT (Rawat et al. 2024, arXiv 2410.18779) distills in an early phase, then trains plain; RKD ("reverse"
KD) distills from the smaller teacher throughout. Here L_total(s) gains a third term, w(s) * L_KD.
"""

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

PROJECTORS = ('interp', 'linear', 'mlp')
ALIGN_LOSSES = ('cosine', 'mse')
KD_SCHEDULES = ('step', 'linear')


def let_lambda(step, lambda0, stop):
    """lambda(s) = lambda0 * max(0, 1 - s / S_stop): the alignment weight falls linearly from lambda0
    at step 0 to 0 at S_stop (the "late-to-early-step" half of LET), and stays 0."""
    return lambda0 * max(0.0, 1.0 - step / stop)


class Projector(nn.Module):
    """P: makes h_student_k (d_student wide) and h_teacher (d_teacher wide) comparable.

    'interp' (the paper's, no parameters): h_teacher is resized to d_student by 1-D linear
             interpolation along the feature axis; h_student_k is used as it is.
    'linear':  a learned d_student -> d_teacher matrix applied to h_student_k.
    'mlp':     a learned d_student -> hidden -> d_teacher MLP with SiLU, as REPA does in vision.
    """

    def __init__(self, kind, d_student, d_teacher):
        super().__init__()
        if kind not in PROJECTORS:
            raise ValueError(f"let_proj={kind!r}: use one of {PROJECTORS}")
        self.kind, self.d_student, self.d_teacher = kind, d_student, d_teacher
        hidden = 2 * max(d_student, d_teacher)
        if kind == 'linear':
            self.net = nn.Linear(d_student, d_teacher, bias=False)
        elif kind == 'mlp':
            self.net = nn.Sequential(nn.Linear(d_student, hidden), nn.SiLU(), nn.Linear(hidden, d_teacher))

    def forward(self, h_student, h_teacher):
        """(B, T, d_student), (B, T, d_teacher) -> two (B, T, d) tensors of one width d."""
        if self.kind != 'interp':
            return self.net(h_student), h_teacher
        if self.d_teacher == self.d_student:
            return h_student, h_teacher
        B, T, _ = h_teacher.shape
        rows = h_teacher.reshape(B * T, 1, self.d_teacher).float()  # interpolate() resizes the last axis
        resized = F.interpolate(rows, size=self.d_student, mode='linear', align_corners=True)  # ends kept
        return h_student, resized.view(B, T, self.d_student)


def make_projectors(kind, n_layers, d_student, d_teacher, seed=0):
    """One projector per aligned block, initialised from its own seed: adding one never changes the
    student's initialisation or any other random stream of the run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.ModuleList([Projector(kind, d_student, d_teacher) for _ in range(n_layers)])


def alignment_loss(h_students, h_teacher, projectors, kind='cosine'):
    """L_align, averaged over tokens and aligned blocks; and the mean cosine (detached, for the log).

    h_students: list of (B, T, d_student) residual streams after the aligned blocks k
    h_teacher:  (B, T, d_teacher), computed without gradient
    kind: 'cosine' = 1 - cos (the paper's -cos plus 1: the same gradient, and a loss >= 0);
          'mse' = mean squared error between the projected states.
    """
    if kind not in ALIGN_LOSSES:
        raise ValueError(f"let_loss={kind!r}: use one of {ALIGN_LOSSES}")
    losses, cosines = [], []
    for h_student, P in zip(h_students, projectors):
        pred, target = P(h_student, h_teacher)
        pred, target = pred.float(), target.float()
        cos = F.cosine_similarity(pred, target, dim=-1)  # (B, T)
        losses.append((1.0 - cos).mean() if kind == 'cosine' else F.mse_loss(pred, target))
        cosines.append(cos.detach().mean())
    return torch.stack(losses).mean(), torch.stack(cosines).mean()


# ---------------------------------------------------------------------------------------------------
# the distillation baselines (SALT, RKD): the teacher's next-token distribution as a soft target

def kd_weight(step, weight0, stop, schedule='linear'):
    """w(s), the weight of L_KD at step s; stop is SALT's n_KD, the length of its distillation phase.

    'step':   w(s) = w0 for s < n_KD, then 0. SALT as published (Rawat et al. 2024, arXiv 2410.18779): KD from the
              small model for the first n_KD steps, then plain next-token training (36K of ~208K steps in its
              main runs, as its reviewers report; the stored paper text did not show its body).
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
