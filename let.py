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

The paper compares LET with two distillation baselines from the same teacher: distill.py.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

PROJECTORS = ('interp', 'linear', 'mlp')
ALIGN_LOSSES = ('cosine', 'mse')


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
