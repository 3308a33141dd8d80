"""LET: the alignment loss and its schedule (let.py), the frozen teacher, and LET inside train.py."""

import os
import re

import pytest
import torch

from components.checkpoint import FORMAT
from conftest import TINY, max_diff, run_train, trained
from distill import KD_CHUNK_BYTES, kd_loss, kd_weight
from let import Projector, alignment_loss, let_lambda, make_projectors
from model import GPT, GPTConfig
from teacher import load_teacher
from test_train import TORCHRUN
from dev.kd_memory import measure, reference_kd_loss

LET = dict(let_lambda=1.0, let_stop=4, let_layers=(0,), let_proj='linear')


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def student(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=32, vocab_size=256, n_layer=3, n_head=2, n_embd=32))


# ------------------------------------------------------------------ the alignment, piece by piece

@pytest.mark.fast
def test_lambda_decays_linearly_from_lambda0_to_zero_at_s_stop():
    assert let_lambda(0, 0.1, 100) == 0.1
    assert let_lambda(50, 0.1, 100) == pytest.approx(0.05)
    assert let_lambda(100, 0.1, 100) == 0.0
    assert let_lambda(250, 0.1, 100) == 0.0  # never negative after S_stop


@pytest.mark.fast
def test_cosine_loss_is_zero_for_identical_directions_and_positive_otherwise():
    proj = make_projectors('interp', 1, 16, 16)
    h = torch.randn(2, 5, 16)
    loss, cos = alignment_loss([3.0 * h], h, proj)  # same direction, another length
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and cos.item() == pytest.approx(1.0, abs=1e-6)
    loss, cos = alignment_loss([torch.randn(2, 5, 16)], h, proj)
    assert loss.item() > 0.5 and cos.item() < 0.5
    loss, _ = alignment_loss([-h], h, proj)
    assert loss.item() == pytest.approx(2.0, abs=1e-6)  # opposite directions: 1 - (-1)


@pytest.mark.fast
def test_interp_resizes_the_teacher_to_the_student_width_and_keeps_a_constant_vector_constant():
    proj = Projector('interp', d_student=32, d_teacher=12)
    teacher_hidden = torch.randn(2, 5, 12)
    pred, target = proj(torch.randn(2, 5, 32), teacher_hidden)
    assert pred.shape == target.shape == (2, 5, 32)
    assert torch.allclose(target[..., 0], teacher_hidden[..., 0]) and torch.allclose(target[..., -1], teacher_hidden[..., -1])
    _, flat = proj(torch.randn(1, 1, 32), torch.full((1, 1, 12), 0.7))
    assert torch.allclose(flat, torch.full((1, 1, 32), 0.7))
    assert not list(proj.parameters())  # the paper's projector has no parameters


@pytest.mark.fast
@pytest.mark.parametrize('kind', ['linear', 'mlp'])
def test_learned_projectors_map_the_student_to_the_teacher_width(kind):
    proj = Projector(kind, d_student=32, d_teacher=12)
    pred, target = proj(torch.randn(2, 5, 32), torch.randn(2, 5, 12))
    assert pred.shape == target.shape == (2, 5, 12)
    assert sum(p.numel() for p in proj.parameters()) > 0


@pytest.mark.fast
def test_mse_loss_compares_the_raw_states():
    proj = make_projectors('interp', 1, 8, 8)
    h = torch.randn(3, 4, 8)
    loss, _ = alignment_loss([h + 0.5], h, proj, 'mse')
    assert loss.item() == pytest.approx(0.25)


@pytest.mark.fast
def test_gradients_reach_the_aligned_block_and_the_projector_not_the_blocks_after_it():
    model = student()
    proj = make_projectors('linear', 1, 32, 48)
    idx = torch.randint(0, 256, (2, 16))
    _, _, hidden = model(idx, idx, hidden_layers=(1,))
    loss, _ = alignment_loss(hidden, torch.randn(2, 16, 48), proj)
    loss.backward()  # the alignment term alone
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in grads if n.startswith('transformer.h.1.'))
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in grads if n.startswith('transformer.h.0.'))
    assert all(grads[n] is None for n in grads if n.startswith('transformer.h.2.') or n.startswith('transformer.ln_f'))
    assert proj[0].net.weight.grad.abs().sum() > 0


def test_the_teacher_gets_no_gradient_and_never_changes(teacher_ckpt):
    teacher = load_teacher(teacher_ckpt)
    before = params(teacher.model)
    model = student()
    proj = make_projectors('linear', 1, 32, teacher.width)
    opt = torch.optim.AdamW(list(model.parameters()) + list(proj.parameters()), lr=1e-2)
    for _ in range(3):
        idx = torch.randint(0, 256, (2, 16))
        target = teacher.hidden(idx)
        assert target.grad_fn is None and not target.requires_grad
        _, lm_loss, hidden = model(idx, idx, hidden_layers=(0,))
        align, _ = alignment_loss(hidden, target, proj)
        (lm_loss + 0.5 * align).backward()
        opt.step()
        opt.zero_grad()
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    assert max_diff(before, params(teacher.model)) == 0.0


# ------------------------------------------------------------------ distillation (SALT, RKD), piece by piece

def test_kd_weight_decays_to_zero_at_its_stop_for_salt_and_stays_constant_for_rkd():
    assert [kd_weight(s, 2.0, 4) for s in (0, 1, 4, 9)] == [2.0, 1.5, 0.0, 0.0]  # SALT: an early phase
    assert [kd_weight(s, 0.5, 0) for s in (0, 1000)] == [0.5, 0.5]  # RKD: throughout


def test_kd_weight_step_is_salt_as_published_full_until_its_stop_then_off():
    """SALT (Rawat et al. 2024): KD at w0 for the first n_KD steps, then plain training; 'linear' is unchanged."""
    assert [kd_weight(s, 2.0, 4, 'step') for s in (0, 1, 3, 4, 5, 9)] == [2.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    assert [kd_weight(s, 2.0, 4, 'linear') for s in (0, 1, 4, 9)] == [2.0, 1.5, 0.0, 0.0]
    assert [kd_weight(s, 2.0, 4) for s in range(10)] == [kd_weight(s, 2.0, 4, 'linear') for s in range(10)]
    for schedule in ('step', 'linear'):  # stop 0 is RKD whatever the schedule
        assert [kd_weight(s, 0.5, 0, schedule) for s in (0, 4, 1000)] == [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="kd_schedule='cosine'"):
        kd_weight(0, 2.0, 4, 'cosine')


def test_kd_loss_is_zero_for_identical_distributions_and_positive_otherwise():
    logits = torch.randn(2, 5, 40)
    assert kd_loss(logits, logits.clone(), 40).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(logits + 3.0, logits, 40).item() == pytest.approx(0.0, abs=1e-5)  # softmax ignores a shift
    assert kd_loss(torch.randn(2, 5, 40), logits, 40).item() > 0.1


@pytest.mark.parametrize('tau', [1.0, 2.0, 0.5])
def test_kd_loss_is_tau_squared_times_the_kl_of_the_softened_distributions(tau):
    student, teacher = torch.randn(3, 4, 16), torch.randn(3, 4, 16)
    p_t, p_s = torch.softmax(teacher / tau, -1), torch.softmax(student / tau, -1)
    kl_per_token = (p_t * (p_t.log() - p_s.log())).sum(-1)  # KL(p_teacher || p_student)
    assert kd_loss(student, teacher, 16, tau).item() == pytest.approx(tau ** 2 * kl_per_token.mean().item(),
                                                                      rel=1e-5)


def test_kd_loss_ignores_the_padded_ids_beyond_the_vocabulary():
    student, teacher = torch.randn(2, 3, 64), torch.randn(2, 3, 64)
    padded_student = student.clone()
    padded_student[..., 50:] = 100.0  # ids 50..63 pad the vocabulary: never in the data
    assert kd_loss(padded_student, teacher, 50).item() == pytest.approx(kd_loss(student[..., :50],
                                                                                teacher[..., :50], 50).item())



@pytest.mark.parametrize('tau', [1.0, 2.0])
def test_chunked_kd_loss_and_its_gradient_equal_the_whole_formulas(tau):
    """kd_loss goes 4 tokens at a time through 3 x 7 tokens (a last chunk of 1), ids 37..43 padding the
    vocabulary; the reference holds whole (B, T, V) log-softmaxes and autograd differentiates it."""
    torch.manual_seed(0)
    student, teacher = (3 * torch.randn(3, 7, 44)).requires_grad_(), 3 * torch.randn(3, 7, 44)
    loss = kd_loss(student, teacher, 37, tau, chunk_tokens=4)
    grad, = torch.autograd.grad(loss, student)
    expected = reference_kd_loss(student, teacher, 37, tau)
    expected_grad, = torch.autograd.grad(expected, student)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-9)
    assert grad[..., 37:].abs().max() == 0  # the padded ids get none


def test_kd_loss_on_a_non_contiguous_student_view_equals_the_whole_formula():
    torch.manual_seed(0)
    time_major = torch.randn(7, 3, 40, requires_grad=True)  # (T, B, V): its (B, T) view cannot be flattened
    teacher = torch.randn(3, 7, 40)
    grad, = torch.autograd.grad(kd_loss(time_major.transpose(0, 1), teacher, 40, 2.0, chunk_tokens=3), time_major)
    expected, = torch.autograd.grad(reference_kd_loss(time_major.transpose(0, 1), teacher, 40, 2.0), time_major)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-9)


def test_kd_loss_on_bfloat16_logits_under_autocast_is_computed_in_float32():
    """The rounding is the logits', not the loss's: the result equals fp32 math on the same bf16 values, and the
    gradient is the fp32 gradient rounded once to the logits' dtype."""
    torch.manual_seed(0)
    student = (3 * torch.randn(2, 9, 64)).bfloat16().requires_grad_()
    teacher = (3 * torch.randn(2, 9, 64)).bfloat16()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = kd_loss(student, teacher, 50, 2.0, chunk_tokens=5)
    grad, = torch.autograd.grad(loss, student)
    fp32_student = student.detach().float().requires_grad_()
    expected = reference_kd_loss(fp32_student, teacher.float(), 50, 2.0)
    expected_grad, = torch.autograd.grad(expected, fp32_student)
    assert loss.dtype == torch.float32 and grad.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(grad, expected_grad.bfloat16(), rtol=2 ** -8, atol=1e-9)


def test_kd_loss_refuses_teacher_logits_that_need_a_gradient():
    """The teacher is frozen: a gradient for its logits would be silently dropped."""
    with pytest.raises(ValueError, match='no_grad'):
        kd_loss(torch.randn(2, 3, 8), torch.randn(2, 3, 8, requires_grad=True), 8)


def test_kd_loss_memory_stays_a_few_chunks_not_whole_logits_tensors():
    """At the paper's V 49,152 (SmolLM2's vocabulary), 2,048 tokens: one (tokens, V) fp32 tensor is 403 MB. The
    unchunked formula's forward + backward held 4 of them above its inputs and gradient (dev/kd_memory.py's
    reference: 4.00x); kd_loss holds about 3 chunks of KD_CHUNK_BYTES. Measured in a fresh process (peak RSS)."""
    r = measure('let', tokens=2048, vocab=49152)
    assert KD_CHUNK_BYTES <= r['extra_bytes'] and r['extra_tensors'] < 0.75

# ------------------------------------------------------------------ LET inside train.py

@pytest.mark.fast
def test_let_run_end_to_end_logs_the_alignment_and_stops_the_teacher_at_s_stop(tiny_run, teacher_ckpt):
    run = tiny_run('let', teacher=teacher_ckpt, **LET, gradient_accumulation_steps=2)
    logs = run.train_log()
    assert [r['lambda'] for r in logs[:5]] == [1.0, 0.75, 0.5, 0.25, 0.0]  # the value used at steps 0..4
    assert all(r['align_loss'] > 0 and -1 <= r['cos'] <= 1 for r in logs[:4])
    assert all(r['align_loss'] == 0 for r in logs[4:])
    # 2 teacher forwards per step (one per micro-batch) for steps 0..3, none from S_stop = 4 on
    assert [r['teacher_calls'] for r in logs] == [2, 4, 6, 8, 8, 8, 8, 8]
    assert [r['flops_teacher'] > 0 for r in logs] == [True] * 4 + [False] * 4
    assert 'step 4: S_stop reached, teacher released' in run.output
    ckpt = run.checkpoint()
    assert not any('teacher' in k for k in ckpt['model'])  # the student's checkpoint holds no teacher
    assert ckpt['projectors'] is not None and ckpt['config']['teacher'] == teacher_ckpt
    assert run.records[-1]['val_loss'] < run.records[0]['val_loss']


@pytest.mark.fast
def test_lambda_zero_trains_exactly_like_plain_training(tiny_run, teacher_ckpt):
    plain = tiny_run('plain')
    zero = tiny_run('zero', teacher=teacher_ckpt, **dict(LET, let_lambda=0.0))
    assert [r['lm_loss'] for r in plain.train_log()] == [r['lm_loss'] for r in zero.train_log()]
    assert max_diff(plain.params(), zero.params()) == 0.0


def test_let_changes_training_while_lambda_is_positive(tiny_run, teacher_ckpt):
    plain = tiny_run('plain')
    let = tiny_run('let', teacher=teacher_ckpt, **LET)
    assert max_diff({k: v for k, v in let.params().items() if k in plain.params()}, plain.params()) > 1e-4


@pytest.mark.fast
def test_let_resume_restores_the_projector_and_continues_exactly(tiny_run, teacher_ckpt):
    common = dict(LET, teacher=teacher_ckpt, let_stop=6, max_iters=8)
    whole = tiny_run('whole', **common)
    tiny_run('split', **dict(common, max_iters=3))
    split = tiny_run('split', **dict(common, init_from='auto'))
    assert [(r['lm_loss'], r['align_loss'], r['teacher_calls']) for r in split.train_log()] == \
           [(r['lm_loss'], r['align_loss'], r['teacher_calls']) for r in whole.train_log()]


def test_let_with_two_ddp_processes_averages_the_projector_and_matches_one_process(
        shakespeare_byte, teacher_ckpt, tmp_path):
    """The projector sits outside DDP: its gradients are averaged by hand. Were they not, rank 0's projector
    would follow only its own half of the batch and differ from one process's."""
    cfg = dict(TINY, **LET, dataset=shakespeare_byte, teacher=teacher_ckpt, max_iters=6, batch_size=4,
               gradient_accumulation_steps=2)
    ddp = trained(tmp_path / 'ddp', run_train(dict(cfg, out_dir=str(tmp_path / 'ddp')), launcher=TORCHRUN))
    single = trained(tmp_path / 'single', run_train(dict(cfg, out_dir=str(tmp_path / 'single'))))
    assert max_diff(ddp.params(), single.params()) < 1e-5
    assert any(k.startswith('projectors.') for k in ddp.params())


def test_let_teacher_layer_aligns_with_a_teacher_block_and_a_resume_must_keep_it(tiny_run, tiny_error,
                                                                                   teacher_ckpt):
    """The paper's layer-pairing ablation: let_teacher_layer=0 aligns block k with the teacher's first block
    output instead of its final state, which changes training; a checkpoint continues only its own pairing."""
    final = tiny_run('final', teacher=teacher_ckpt, **LET)
    first = tiny_run('first', teacher=teacher_ckpt, **LET, let_teacher_layer=0)
    assert 'LET aligns at block 0' in first.output and 'LET aligns at' not in final.output
    align = [[r['align_loss'] for r in run.train_log()[:4]] for run in (final, first)]
    assert all(a > 0 for a in align[1]) and align[0] != align[1]
    assert [r['lm_loss'] for r in final.train_log()][1:] != [r['lm_loss'] for r in first.train_log()][1:]
    message = tiny_error('first', teacher=teacher_ckpt, **LET, let_teacher_layer=1, init_from='resume')
    assert 'was trained with let_teacher_layer=0, the config says 1' in message


def test_a_teacher_layer_beyond_the_teachers_depth_is_one_clear_error(tiny_error, teacher_ckpt, tmp_path):
    message = tiny_error('bad', teacher=teacher_ckpt, **LET, let_teacher_layer=5)
    assert 'let_teacher_layer=5' in message and 'has 2 blocks' in message and '0..1' in message
    assert not (tmp_path / 'bad' / 'log.jsonl').exists()
    assert 'let_teacher_layer=-2 must be -1' in tiny_error('worse', teacher=teacher_ckpt, **LET, let_teacher_layer=-2)


KD = dict(kd_lambda=1.0, kd_stop=4, kd_temperature=1.0)


def test_salt_computes_teacher_logits_only_until_its_stop_while_let_keeps_the_teacher(tiny_run, teacher_ckpt):
    """LET (S_stop 6) and SALT (stop 4) in one run: the teacher runs to step 6, its logits only to step 4."""
    run = tiny_run('both', teacher=teacher_ckpt, **dict(LET, let_stop=6), **KD)
    logs = run.train_log()
    assert [r['kd_weight'] for r in logs[:5]] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert all(r['kd_loss'] > 0 for r in logs[:4]) and all(r['kd_loss'] == 0 for r in logs[4:])
    assert all(r['align_loss'] > 0 for r in logs[:6]) and all(r['align_loss'] == 0 for r in logs[6:])
    assert [r['teacher_logit_calls'] for r in logs] == [1, 2, 3, 4, 4, 4, 4, 4]
    assert [r['teacher_calls'] for r in logs] == [1, 2, 3, 4, 5, 6, 6, 6]  # one forward serves both terms


def test_salt_step_distills_at_full_weight_until_its_stop_then_releases_the_teacher(tiny_run, teacher_ckpt):
    """kd_schedule='step' (SALT as published): w0 to step 4, then 0; the teacher's logits only until then, and the
    teacher is gone from step 4 on, as with the linear schedule."""
    run = tiny_run('step', teacher=teacher_ckpt, let_lambda=0.0, **KD, kd_schedule='step')
    logs = run.train_log()
    assert [r['kd_weight'] for r in logs] == [1.0] * 4 + [0.0] * 4
    assert all(r['kd_loss'] > 0 for r in logs[:4]) and all(r['kd_loss'] == 0 for r in logs[4:])
    assert [r['teacher_logit_calls'] for r in logs] == [1, 2, 3, 4, 4, 4, 4, 4]
    assert [r['teacher_calls'] for r in logs] == [1, 2, 3, 4, 4, 4, 4, 4]
    assert 'step 4: S_stop reached, teacher released' in run.output


def test_rkd_keeps_the_teacher_for_the_whole_run(tiny_run, teacher_ckpt):
    run = tiny_run('rkd', teacher=teacher_ckpt, let_lambda=0.0, kd_lambda=0.3, kd_stop=0)
    logs = run.train_log()
    assert [r['kd_weight'] for r in logs] == [0.3] * 8
    assert [r['teacher_logit_calls'] for r in logs] == list(range(1, 9))
    assert 'teacher released' not in run.output and run.checkpoint()['projectors'] is None


def test_kd_weight_zero_trains_exactly_like_plain_training(tiny_run, teacher_ckpt):
    plain = tiny_run('plain')
    zero = tiny_run('zero', teacher=teacher_ckpt, let_lambda=0.0, kd_lambda=0.0, kd_stop=4)
    assert [r['lm_loss'] for r in plain.train_log()] == [r['lm_loss'] for r in zero.train_log()]
    assert max_diff(plain.params(), zero.params()) == 0.0


def test_distillation_changes_training(tiny_run, teacher_ckpt):
    plain = tiny_run('plain')
    salt = tiny_run('salt', teacher=teacher_ckpt, let_lambda=0.0, **KD)
    assert max_diff(plain.params(), salt.params()) > 1e-4


# ------------------------------------------------------------------ bad input, caught before any step

@pytest.mark.parametrize('bad, message', [
    (dict(let_layers=(2,)), r'let_layers=\(2,\).*counted from 0.*in 0\.\.1'),
    (dict(let_layers=(-1,)), 'counted from 0'),
    (dict(let_stop=0), 'let_stop=0 must be a positive'),
    (dict(let_proj='conv'), "let_proj='conv'"),
    (dict(let_loss='kl'), "let_loss='kl'"),
    (dict(kd_lambda=-1.0), 'kd_lambda=-1.0 must be >= 0'),
    (dict(kd_lambda=1.0, kd_temperature=0.0), 'kd_temperature=0.0 must be > 0'),
])
def test_bad_let_settings_are_one_clear_error(tiny_error, teacher_ckpt, tmp_path, bad, message):
    assert re.search(message, tiny_error('bad', teacher=teacher_ckpt, **dict(LET, **bad)))
    assert not (tmp_path / 'bad' / 'log.jsonl').exists()


def test_bad_kd_schedule_is_one_clear_error(tiny_error, teacher_ckpt, tmp_path):
    message = tiny_error('bad', teacher=teacher_ckpt, let_lambda=0.0, **KD, kd_schedule='cosine')
    assert "kd_schedule='cosine': use one of ('step', 'linear')" in message
    assert not (tmp_path / 'bad' / 'log.jsonl').exists()


def test_missing_or_corrupt_teacher_is_one_clear_error(tiny_error, tmp_path):
    assert 'not found' in tiny_error('a', teacher=str(tmp_path / 'nowhere' / 'ckpt.pt'), **LET)
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(os.urandom(512))
    assert 'corrupt.pt' in tiny_error('b', teacher=str(corrupt), **LET)
    assert 'unknown teacher' in tiny_error('c', teacher='llama-70b', **LET)


def test_a_teacher_with_another_tokenizer_is_refused(tiny_error, tmp_path):
    """A GPT-2-vocabulary teacher (a real, if untrained, model in this repo's checkpoint format) cannot teach a
    student that reads bytes: LET compares states token by token."""
    model = GPT(GPTConfig(block_size=32, vocab_size=50304, n_layer=1, n_head=2, n_embd=16))
    path = tmp_path / 'gpt2_teacher.pt'
    torch.save({'format': FORMAT, 'model': model.state_dict(), 'tokenizer': 'gpt2',
                'model_args': model.config.__dict__}, path)
    assert re.search("'gpt2' tokenizer but the dataset was made with 'byte'.*--tokenizer=gpt2",
                     tiny_error('mismatch', teacher=str(path), **LET))


def test_distillation_without_a_teacher_is_an_error(tiny_error):
    assert 'kd_lambda=1.0 distills from a teacher: set teacher' in tiny_error(kd_lambda=1.0)
