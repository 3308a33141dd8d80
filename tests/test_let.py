"""LET: the frozen teacher, the alignment loss and its schedule, and LET inside train.py."""

import os

import pytest
import torch

import train
from configurator import ConfigError
from conftest import TINY, read_log
from model import GPT, GPTConfig
from teacher import Projector, alignment_loss, let_lambda, load_teacher, make_projectors
from test_train import max_diff, params, torchrun

LET = dict(let_lambda=1.0, let_stop=4, let_layers=(0,), let_proj='linear')


def student(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=32, vocab_size=256, n_layer=3, n_head=2, n_embd=32))


# ------------------------------------------------------------------ the alignment, piece by piece

def test_lambda_decays_linearly_from_lambda0_to_zero_at_s_stop():
    assert let_lambda(0, 0.1, 100) == 0.1
    assert let_lambda(50, 0.1, 100) == pytest.approx(0.05)
    assert let_lambda(100, 0.1, 100) == 0.0
    assert let_lambda(250, 0.1, 100) == 0.0  # never negative after S_stop


def test_cosine_loss_is_zero_for_identical_directions_and_positive_otherwise():
    proj = make_projectors('interp', 1, 16, 16)
    h = torch.randn(2, 5, 16)
    loss, cos = alignment_loss([3.0 * h], h, proj)  # same direction, another length
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and cos.item() == pytest.approx(1.0, abs=1e-6)
    loss, cos = alignment_loss([torch.randn(2, 5, 16)], h, proj)
    assert loss.item() > 0.5 and cos.item() < 0.5
    loss, _ = alignment_loss([-h], h, proj)
    assert loss.item() == pytest.approx(2.0, abs=1e-6)  # opposite directions: 1 - (-1)


def test_interp_resizes_the_teacher_to_the_student_width_and_keeps_a_constant_vector_constant():
    proj = Projector('interp', d_student=32, d_teacher=12)
    teacher_hidden = torch.randn(2, 5, 12)
    pred, target = proj(torch.randn(2, 5, 32), teacher_hidden)
    assert pred.shape == target.shape == (2, 5, 32)
    assert torch.allclose(target[..., 0], teacher_hidden[..., 0]) and torch.allclose(target[..., -1], teacher_hidden[..., -1])
    _, flat = proj(torch.randn(1, 1, 32), torch.full((1, 1, 12), 0.7))
    assert torch.allclose(flat, torch.full((1, 1, 32), 0.7))
    assert not list(proj.parameters())  # the paper's projector has no parameters


@pytest.mark.parametrize('kind', ['linear', 'mlp'])
def test_learned_projectors_map_the_student_to_the_teacher_width(kind):
    proj = Projector(kind, d_student=32, d_teacher=12)
    pred, target = proj(torch.randn(2, 5, 32), torch.randn(2, 5, 12))
    assert pred.shape == target.shape == (2, 5, 12)
    assert sum(p.numel() for p in proj.parameters()) > 0


def test_mse_loss_compares_the_raw_states():
    proj = make_projectors('interp', 1, 8, 8)
    h = torch.randn(3, 4, 8)
    loss, _ = alignment_loss([h + 0.5], h, proj, 'mse')
    assert loss.item() == pytest.approx(0.25)


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
    assert teacher.calls == 3


# ------------------------------------------------------------------ LET inside train.py

def test_let_run_end_to_end_logs_the_alignment_and_stops_the_teacher_at_s_stop(tiny_run, teacher_ckpt, tmp_path):
    run = tiny_run('let', teacher=teacher_ckpt, **LET, gradient_accumulation_steps=2)
    logs = read_log(tmp_path / 'let', 'train')
    assert [r['lambda'] for r in logs[:5]] == [1.0, 0.75, 0.5, 0.25, 0.0]  # the value used at steps 0..4
    assert all(r['align_loss'] > 0 and -1 <= r['cos'] <= 1 for r in logs[:4])
    assert all(r['align_loss'] == 0 for r in logs[4:])
    # 2 teacher forwards per step (one per micro-batch) for steps 0..3, none from S_stop = 4 on
    assert [r['teacher_calls'] for r in logs] == [2, 4, 6, 8, 8, 8, 8, 8]
    assert [r['flops_teacher'] > 0 for r in logs] == [True] * 4 + [False] * 4
    ckpt = torch.load(tmp_path / 'let' / 'ckpt.pt', weights_only=False)
    assert not any('teacher' in k for k in ckpt['model'])  # the student's checkpoint holds no teacher
    assert ckpt['projectors'] is not None and ckpt['config']['teacher'] == teacher_ckpt
    assert run.records[-1]['val_loss'] < run.records[0]['val_loss']


def test_lambda_zero_trains_exactly_like_plain_training(tiny_run, teacher_ckpt, tmp_path):
    tiny_run('plain')
    tiny_run('zero', teacher=teacher_ckpt, **dict(LET, let_lambda=0.0))
    plain, zero = read_log(tmp_path / 'plain', 'train'), read_log(tmp_path / 'zero', 'train')
    assert [r['lm_loss'] for r in plain] == [r['lm_loss'] for r in zero]


def test_let_changes_training_while_lambda_is_positive(tiny_run, teacher_ckpt, tmp_path):
    plain = tiny_run('plain')
    let = tiny_run('let', teacher=teacher_ckpt, **LET)
    assert max_diff(params(plain.model), params(let.model)) > 1e-4


def test_let_resume_restores_the_projector_and_continues_exactly(tiny_run, teacher_ckpt, tmp_path):
    common = dict(LET, teacher=teacher_ckpt, let_stop=6, max_iters=8)
    tiny_run('whole', **common)
    tiny_run('split', **dict(common, max_iters=3))
    tiny_run('split', **dict(common, init_from='auto'))
    whole, split = read_log(tmp_path / 'whole', 'train'), read_log(tmp_path / 'split', 'train')
    assert [(r['lm_loss'], r['align_loss'], r['teacher_calls']) for r in split] == \
           [(r['lm_loss'], r['align_loss'], r['teacher_calls']) for r in whole]


def test_let_with_two_ddp_processes_keeps_student_and_projector_identical_and_matches_one_process(
        shakespeare_byte, teacher_ckpt, tmp_path):
    cfg = dict(TINY, **LET, dataset=shakespeare_byte, teacher=teacher_ckpt, max_iters=6, batch_size=4,
               gradient_accumulation_steps=2)
    rank0, rank1 = torchrun(2, dict(cfg, out_dir=str(tmp_path / 'ddp')), tmp_path)
    assert max_diff(rank0, rank1) == 0.0  # projector included: its gradients are averaged by hand
    single = train.main([], dict(cfg, out_dir=str(tmp_path / 'single')))
    expected = params(single.model)
    expected.update({'projectors.' + k: v for k, v in single.projectors.state_dict().items()})
    assert max_diff(rank0, expected) < 1e-5


# ------------------------------------------------------------------ bad input, caught before any step

@pytest.mark.parametrize('bad, message', [
    (dict(let_layers=(2,)), r'let_layers=\(2,\).*counted from 0.*in 0\.\.1'),
    (dict(let_layers=(-1,)), 'counted from 0'),
    (dict(let_stop=0), 'let_stop=0 must be a positive'),
    (dict(let_proj='conv'), "let_proj='conv'"),
    (dict(let_loss='kl'), "let_loss='kl'"),
])
def test_bad_let_settings_are_one_clear_error(tiny_run, teacher_ckpt, tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        tiny_run('bad', teacher=teacher_ckpt, **dict(LET, **bad))
    assert not (tmp_path / 'bad' / 'log.jsonl').exists()


def test_missing_or_corrupt_teacher_is_one_clear_error(tiny_run, tmp_path):
    with pytest.raises(ConfigError, match='not found'):
        tiny_run('a', teacher=str(tmp_path / 'nowhere' / 'ckpt.pt'), **LET)
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(os.urandom(512))
    with pytest.raises(ConfigError, match='corrupt.pt'):
        tiny_run('b', teacher=str(corrupt), **LET)
    with pytest.raises(ConfigError, match='unknown teacher'):
        tiny_run('c', teacher='llama-70b', **LET)


def test_a_teacher_with_another_tokenizer_is_refused(tiny_run, tmp_path):
    """A GPT-2-vocabulary teacher (a real, if untrained, model in this repo's checkpoint format) cannot teach a
    student that reads bytes: LET compares states token by token."""
    model = GPT(GPTConfig(block_size=32, vocab_size=50304, n_layer=1, n_head=2, n_embd=16))
    path = tmp_path / 'gpt2_teacher.pt'
    torch.save({'format': train.CKPT_FORMAT, 'model': model.state_dict(), 'tokenizer': 'gpt2',
                'model_args': model.config.__dict__}, path)
    with pytest.raises(ConfigError, match="'gpt2' tokenizer but dataset .* was made with 'byte'.*--tokenizer=gpt2"):
        tiny_run('mismatch', teacher=str(path), **LET)
