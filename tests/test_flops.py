"""MFU's numerator (train.step_flops, from model.py's forward_flops_per_token) confirmed by a count: torch's
FlopCounterMode on the student's training step and the teacher's forward (dev.gpu_memory.count_flops, attention on
its math backend so that its matmuls are counted) gives exactly the formula, on small models of every block kind."""

import pytest

from configurator import TrainConfig, load_config
from dev.gpu_memory import count_flops
from model import GPTConfig

VOCAB = 320
LLAMA = dict(n_layer=3, n_head=4, n_kv_head=2, n_embd=64, mlp_hidden=96, block_size=32, norm='rmsnorm', mlp='swiglu',
             pos='rope', bias=False, tie_embeddings=False)
GPT2 = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, mlp='gelu_exact', tie_embeddings=True)
TEACHERS = {
    'llama': GPTConfig(block_size=64, vocab_size=VOCAB, n_layer=3, n_head=2, n_kv_head=1, n_embd=48, mlp_hidden=64,
                       bias=False, norm='rmsnorm', mlp='swiglu', pos='rope'),
    'gpt-neox': GPTConfig(block_size=64, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, mlp='gelu_exact',
                          pos='rope', rope_dims=4, parallel_block=True, tie_embeddings=False),
    'opt': GPTConfig(block_size=64, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, mlp='relu'),
}


def config(student, **settings):
    return load_config(TrainConfig, [], {**student, **settings})


@pytest.mark.parametrize('student', [LLAMA, GPT2], ids=['llama', 'gpt2'])
def test_the_students_training_step_counts_three_forwards(student):
    """Forward, loss and backward of one sequence: 3 x forward_flops_per_token per token, attention included."""
    counted, formula = count_flops(config(student), VOCAB)['student']
    assert counted == formula > 0


def test_attention_is_counted():
    """Per token, only attention grows with the sequence: 2 x 2 x T x n_embd per block forward, 3x that a step."""
    short, long = (count_flops(config(LLAMA, block_size=T), VOCAB)['student'][0] for T in (16, 32))
    assert long - short == 3 * 2 * 2 * LLAMA['n_layer'] * (32 - 16) * LLAMA['n_embd']


@pytest.mark.parametrize('kind', sorted(TEACHERS))
@pytest.mark.parametrize('layer, kd', [(-1, False), (0, False), (1, True)], ids=['final', 'block-0', 'logits'])
def test_the_teachers_forward_counts_what_step_flops_charges(kind, layer, kd):
    """LET's state (the final one without the head, or blocks 0..j only) and distillation's logits (all blocks and
    the head): the forward train.py runs, counted as step_flops charges it."""
    cfg = config(LLAMA, teacher='t', let_teacher_layer=layer, kd_lambda=1.0 if kd else 0.0)
    counted, formula = count_flops(cfg, VOCAB, TEACHERS[kind], kd=kd)['teacher']
    assert counted == formula > 0
