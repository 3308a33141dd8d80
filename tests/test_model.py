"""model.py: the GPT in both flavours."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model import GPT, GPTConfig

GPT2 = dict(block_size=16, vocab_size=64, n_layer=3, n_head=4, n_embd=32)
LLAMA = dict(GPT2, norm='rmsnorm', mlp='swiglu', pos='rope', n_kv_head=2, bias=False, tie_embeddings=False)
FLAVOURS = pytest.mark.parametrize('flavour', [GPT2, LLAMA], ids=['gpt2', 'llama'])


def make(flavour, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**flavour)).eval()


@FLAVOURS
def test_shapes(flavour):
    model = make(flavour)
    idx = torch.randint(0, 64, (2, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 16, 64) and loss.shape == ()
    logits, loss = model(idx)  # sampling: only the last position, no loss
    assert logits.shape == (2, 1, 64) and loss is None
    assert model.final_hidden(idx).shape == (2, 16, 32)


@FLAVOURS
def test_changing_a_later_token_never_changes_earlier_logits(flavour):
    model = make(flavour)
    idx = torch.randint(0, 64, (1, 16))
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 64
    _, a = model.final_hidden(idx, with_logits=True)
    _, b = model.final_hidden(changed, with_logits=True)
    assert torch.equal(a[0, :10], b[0, :10])
    assert not torch.allclose(a[0, 10:], b[0, 10:])


@FLAVOURS
def test_returned_hidden_states_equal_a_manual_walk_through_the_blocks(flavour):
    model = make(flavour)
    idx = torch.randint(0, 64, (2, 16))
    logits, _, hidden = model(idx, idx, hidden_layers=(2, 0))
    x = model.transformer.wte(idx)
    rope = None
    if flavour.get('pos', 'learned') == 'learned':
        x = x + model.transformer.wpe(torch.arange(16))
    else:
        rope = (model.rope_cos, model.rope_sin)
    walk = []
    for block in model.transformer.h:
        x = block(x, rope)
        walk.append(x)
    assert torch.equal(hidden[0], walk[2]) and torch.equal(hidden[1], walk[0])
    assert torch.allclose(logits, model.lm_head(model.transformer.ln_f(walk[-1])))
    assert torch.equal(model.final_hidden(idx), model.transformer.ln_f(walk[-1]))


def test_gpt2_flavour_ties_the_head_and_llama_flavour_can_untie_it():
    gpt2, llama = make(GPT2), make(LLAMA)
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    assert llama.lm_head.weight is not llama.transformer.wte.weight


@FLAVOURS
def test_flops_per_token_matches_a_count(flavour):
    """The matmul part is checked against PyTorch's FLOP counter; attention's (T x T) matmuls against their
    textbook count, since the counter does not see inside the CPU attention kernel."""
    model = make(flavour)
    T = 16
    idx = torch.randint(0, 64, (2, T))
    with FlopCounterMode(display=False) as counter:
        model.final_hidden(idx, with_logits=True)
    counted = counter.get_total_flops() / idx.numel()
    cfg = model.config
    attention = 2 * 2 * cfg.n_layer * T * cfg.n_embd
    assert model.forward_flops_per_token(T) == counted + attention
    with FlopCounterMode(display=False) as counter:
        model.final_hidden(idx)  # what a teacher runs: no head
    assert model.forward_flops_per_token(T, head=False) == counter.get_total_flops() / idx.numel() + attention


@FLAVOURS
def test_flops_of_a_teacher_stopping_at_block_j_count_blocks_0_to_j_only(flavour):
    """LET aligned with the teacher's block j runs blocks 0..j and no head: MFU must count that, not all."""
    model = make(flavour)
    T = 16
    idx = torch.randint(0, 64, (2, T))
    for j in range(model.config.n_layer):
        with FlopCounterMode(display=False) as counter:
            model.final_hidden(idx, layer=j)
        attention = 2 * 2 * (j + 1) * T * model.config.n_embd
        assert model.forward_flops_per_token(T, head=False, blocks=j + 1) == \
            counter.get_total_flops() / idx.numel() + attention


@pytest.mark.parametrize('bad, message', [
    (dict(n_embd=30, n_head=4), 'not divisible by n_head'),
    (dict(n_kv_head=3), 'not a multiple of n_kv_head'),
    (dict(norm='batchnorm'), "use 'layernorm' or 'rmsnorm'"),
    (dict(n_layer=0), 'must be positive'),
])
def test_impossible_shapes_are_one_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**dict(GPT2, **bad))


def test_sequences_longer_than_block_size_are_refused():
    with pytest.raises(ValueError, match='longer than block_size'):
        make(GPT2)(torch.zeros(1, 17, dtype=torch.long))


def test_partial_rotary_turns_only_the_first_rope_dims_of_each_head():
    from model import apply_rotary, rotary_tables
    cos, sin = rotary_tables(4, 16, 10000.0)
    x = torch.randn(1, 2, 16, 8)
    y = apply_rotary(x, cos, sin)
    assert torch.equal(y[..., 4:], x[..., 4:])
    assert torch.equal(y[..., :4], apply_rotary(x[..., :4], cos, sin))
    assert not torch.allclose(y[..., 1:, :4], x[..., 1:, :4])  # position 0 is not turned at all


@pytest.mark.parametrize('bad, message', [
    (dict(LLAMA, rope_dims=3), 'even rope_dims=3'),
    (dict(LLAMA, rope_dims=10), 'at most the head size 8'),
    (dict(LLAMA, rope_scaling={'factor': 8.0}), 'rope_scaling=.*give exactly'),
    (dict(GPT2, mlp='geglu'), "mlp='geglu': use one of"),
])
def test_impossible_teacher_switches_are_one_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**bad)


def test_a_checkpoint_from_before_the_teacher_switches_still_resumes():
    """model_args saved before parallel_block, rope_dims and rope_scaling existed: the new settings' defaults."""
    from dataclasses import asdict

    from components.checkpoint import check_resume
    from configurator import TrainConfig
    current = asdict(GPTConfig(**LLAMA))
    old = {k: v for k, v in current.items() if k not in ('parallel_block', 'rope_dims', 'rope_scaling')}
    cfg = TrainConfig()
    check_resume({'model_args': old, 'config': asdict(cfg)}, 'ckpt.pt', current, cfg)


def test_activation_checkpointing_changes_no_number():
    """Backward recomputes each block from its input, with the same dropout masks: the same loss and
    gradients, bit for bit."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**dict(GPT2, dropout=0.1)))
    idx = torch.randint(0, 64, (2, 16))
    results = []
    for checkpointing in (False, True):
        model.activation_checkpointing = checkpointing
        torch.manual_seed(1)  # the same dropout masks, also when backward recomputes a block
        _, loss, hidden = model(idx, idx, hidden_layers=(0,))
        (loss + hidden[0].square().mean()).backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
        model.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_activation_checkpointing_keeps_less_for_backward():
    model = GPT(GPTConfig(**dict(GPT2, n_layer=4)))
    idx = torch.randint(0, 64, (2, 16))
    kept = []
    for checkpointing in (False, True):
        model.activation_checkpointing = checkpointing
        sizes = []

        def keep(t):
            sizes.append(t.numel() * t.element_size())
            return t
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            model(idx, idx)
        kept.append(sum(sizes))
    assert kept[1] < kept[0] / 2  # the blocks' insides are recomputed, not kept
