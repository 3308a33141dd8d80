"""
The Hugging Face teacher families, one converter each: a config.json (as a dict) and the folder's tensors become
model.py's GPTConfig and state dict. The Llama family (SmolLM, SmolLM2, Llama-3.2), GPT-NeoX (Pythia), OPT and
GPT-2. A setting model.py would not reproduce exactly is refused (Unsupported) by name, never approximated.
"""

import torch

from model import LLAMA3_ROPE_KEYS, GPTConfig


class Unsupported(ValueError):
    """A Hugging Face model whose architecture model.py does not reproduce exactly."""


def _need(ok, folder, what):
    if not ok:
        raise Unsupported(f"{folder}: {what}; model.py would not reproduce this teacher exactly, so it is refused")


def _rope(hf, folder):
    """(theta, Llama 3 scaling or None, rotary fraction of a head) from a config.json of transformers 4
    (rope_theta, rope_scaling, rotary_pct) or 5 (rope_parameters)."""
    params = {**(hf.get('rope_scaling') or {}), **(hf.get('rope_parameters') or {})}
    theta = params.get('rope_theta', hf.get('rope_theta', hf.get('rotary_emb_base', 10000.0)))
    fraction = params.get('partial_rotary_factor', hf.get('partial_rotary_factor', hf.get('rotary_pct', 1.0)))
    kind = params.get('rope_type', params.get('type', 'default'))
    _need(kind in ('default', 'llama3'), folder, f"rotary type {kind!r} (model.py has plain rotary and Llama 3's)")
    scaling = None
    if kind == 'llama3':
        params.setdefault('original_max_position_embeddings', hf['max_position_embeddings'])
        scaling = {k: params[k] for k in LLAMA3_ROPE_KEYS}
    return float(theta), scaling, fraction


def _layers(w, n_layer, prefix, kinds, names):
    """model.py's per-layer tensors from a family's. names: each of model.py's parameters in a layer (without
    '.weight' or '.bias') -> the family's name for it in the layer, or a function (the family's layer prefix,
    kind) that builds it; kinds: ('weight',), or ('weight', 'bias') where the family has biases."""
    sd = {}
    for i in range(n_layer):
        h, p = f'{prefix}.{i}.', f'transformer.h.{i}.'  # the family's names, model.py's names
        for ours, theirs in names.items():
            for kind in kinds:
                sd[f'{p}{ours}.{kind}'] = theirs(h, kind) if callable(theirs) else w[f'{h}{theirs}.{kind}']
    return sd


def _fused(w, *names):
    """A layer's tensors stacked into one, as model.py fuses them: [q; k; v] or [gate; up]."""
    return lambda h, kind: torch.cat([w[f'{h}{name}.{kind}'] for name in names])


BOTH = ('weight', 'bias')


def _from_llama(hf, w, folder):
    """The Llama family (SmolLM, SmolLM2, Llama-3.2): model.py's LLaMA flavour, weight for weight."""
    n_head, n_embd = hf['num_attention_heads'], hf['hidden_size']
    bias = hf.get('attention_bias', False)
    _need(hf.get('hidden_act', 'silu') == 'silu', folder, f"activation {hf.get('hidden_act')!r} (SwiGLU uses silu)")
    _need((hf.get('head_dim') or n_embd // n_head) == n_embd // n_head, folder,
          f"head_dim={hf.get('head_dim')} differs from hidden_size / num_attention_heads")
    _need(hf.get('mlp_bias', False) == bias, folder, "biases in attention but not in the MLP, or the reverse")
    theta, scaling, fraction = _rope(hf, folder)
    _need(fraction == 1.0, folder, f"partial rotary ({fraction}) in a Llama model")
    config = GPTConfig(block_size=hf['max_position_embeddings'], vocab_size=hf['vocab_size'],
                       n_layer=hf['num_hidden_layers'], n_head=n_head,
                       n_kv_head=hf.get('num_key_value_heads') or n_head, n_embd=n_embd,
                       mlp_hidden=hf['intermediate_size'], bias=bias, norm='rmsnorm',
                       norm_eps=hf.get('rms_norm_eps', 1e-6), mlp='swiglu', pos='rope', rope_theta=theta,
                       rope_scaling=scaling, tie_embeddings=hf.get('tie_word_embeddings', False))
    sd = {'transformer.wte.weight': w['model.embed_tokens.weight'],
          'transformer.ln_f.weight': w['model.norm.weight'],
          'lm_head.weight': w['model.embed_tokens.weight'] if config.tie_embeddings else w['lm_head.weight'],
          **_layers(w, config.n_layer, 'model.layers', ('weight',),  # RMSNorm has no bias
                    {'ln_1': 'input_layernorm', 'ln_2': 'post_attention_layernorm'}),
          **_layers(w, config.n_layer, 'model.layers', BOTH if bias else ('weight',), {
              'attn.c_attn': _fused(w, 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'),
              'attn.c_proj': 'self_attn.o_proj',
              'mlp.c_fc': _fused(w, 'mlp.gate_proj', 'mlp.up_proj'), 'mlp.c_proj': 'mlp.down_proj'})}
    return config, sd


NEOX_ACTIVATIONS = {'gelu': 'gelu_exact', 'gelu_new': 'gelu', 'gelu_pytorch_tanh': 'gelu'}


def _from_gpt_neox(hf, w, folder):
    """GPT-NeoX (Pythia): LayerNorm with biases, attention and MLP side by side, rotary on part of each head."""
    n_head, n_embd = hf['num_attention_heads'], hf['hidden_size']
    hs = n_embd // n_head
    act = hf.get('hidden_act', 'gelu')
    _need(act in NEOX_ACTIVATIONS, folder, f"activation {act!r}")
    _need(hf.get('attention_bias', True), folder, "attention without biases (the MLP keeps its own)")
    theta, scaling, fraction = _rope(hf, folder)
    _need(scaling is None, folder, "rotary scaling in a GPT-NeoX model")
    config = GPTConfig(block_size=hf['max_position_embeddings'], vocab_size=hf['vocab_size'],
                       n_layer=hf['num_hidden_layers'], n_head=n_head, n_embd=n_embd,
                       mlp_hidden=hf['intermediate_size'], bias=True, norm='layernorm',
                       norm_eps=hf.get('layer_norm_eps', 1e-5), mlp=NEOX_ACTIVATIONS[act], pos='rope',
                       rope_theta=theta, rope_dims=int(hs * fraction),
                       parallel_block=hf.get('use_parallel_residual', True),
                       tie_embeddings=hf.get('tie_word_embeddings', False))

    def qkv(h, kind):
        # GPT-NeoX keeps each head's q, k, v together ([q_0 k_0 v_0 q_1 ...]); model.py wants [q; k; v]
        t = w[h + f'attention.query_key_value.{kind}']
        t = t.view(n_head, 3, hs, *t.shape[1:]).transpose(0, 1)  # (3, n_head, hs, ...)
        return t.reshape(3 * n_embd, *t.shape[3:])

    sd = {'transformer.wte.weight': w['gpt_neox.embed_in.weight'],
          'lm_head.weight': w['gpt_neox.embed_in.weight'] if config.tie_embeddings else w['embed_out.weight'],
          **{f'transformer.ln_f.{kind}': w[f'gpt_neox.final_layer_norm.{kind}'] for kind in BOTH},
          **_layers(w, config.n_layer, 'gpt_neox.layers', BOTH, {
              'ln_1': 'input_layernorm', 'ln_2': 'post_attention_layernorm', 'attn.c_attn': qkv,
              'attn.c_proj': 'attention.dense', 'mlp.c_fc': 'mlp.dense_h_to_4h', 'mlp.c_proj': 'mlp.dense_4h_to_h'})}
    return config, sd


OPT_POSITION_OFFSET = 2  # OPT's position table starts 2 rows in (fairseq's padding offset; modeling_opt.py)


def _from_opt(hf, w, folder):
    """OPT (OPT-125M): GPT-2's shape with ReLU and a position table that starts two rows in."""
    n_embd = hf['hidden_size']
    _need(hf.get('do_layer_norm_before', True) and not hf.get('_remove_final_layer_norm', False), folder,
          "post-norm OPT (OPT-350m)")
    _need(hf.get('word_embed_proj_dim', n_embd) == n_embd, folder, "embeddings projected to another width")
    _need(hf.get('activation_function', 'relu') == 'relu', folder, f"activation {hf.get('activation_function')!r}")
    _need(hf.get('enable_bias', True) and hf.get('layer_norm_elementwise_affine', True), folder,
          "layers without biases or norms without weights")
    config = GPTConfig(block_size=hf['max_position_embeddings'], vocab_size=hf['vocab_size'],
                       n_layer=hf['num_hidden_layers'], n_head=hf['num_attention_heads'], n_embd=n_embd,
                       mlp_hidden=hf['ffn_dim'], bias=True, mlp='relu',
                       tie_embeddings=hf.get('tie_word_embeddings', True))
    w = {k.removeprefix('model.'): v for k, v in w.items()}  # older files name them 'decoder.*'
    sd = {'transformer.wte.weight': w['decoder.embed_tokens.weight'],
          'transformer.wpe.weight': w['decoder.embed_positions.weight'][OPT_POSITION_OFFSET:],
          'lm_head.weight': w['decoder.embed_tokens.weight'] if config.tie_embeddings else w['lm_head.weight'],
          **{f'transformer.ln_f.{kind}': w[f'decoder.final_layer_norm.{kind}'] for kind in BOTH},
          **_layers(w, config.n_layer, 'decoder.layers', BOTH, {
              'ln_1': 'self_attn_layer_norm', 'ln_2': 'final_layer_norm',
              'attn.c_attn': _fused(w, 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'),
              'attn.c_proj': 'self_attn.out_proj', 'mlp.c_fc': 'fc1', 'mlp.c_proj': 'fc2'})}
    return config, sd


# Hugging Face GPT-2 uses Conv1D layers whose weights are (in, out): transposed relative to nn.Linear
HF_CONV1D = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')


def _from_gpt2(hf, w, folder):
    """GPT-2: model.py's own layout already, but for Conv1D's transposed weights and the causal-mask buffers."""
    _need(hf.get('activation_function', 'gelu_new') == 'gelu_new', folder,
          f"activation {hf.get('activation_function')!r} (model.py's GPT-2 MLP is gelu_new)")
    _need(hf.get('scale_attn_weights', True) and not hf.get('scale_attn_by_inverse_layer_idx', False), folder,
          "attention scaling other than 1/sqrt(head size)")
    config = GPTConfig(block_size=hf['n_positions'], vocab_size=hf['vocab_size'], n_layer=hf['n_layer'],
                       n_head=hf['n_head'], n_embd=hf['n_embd'], mlp_hidden=hf.get('n_inner') or 0,
                       norm_eps=hf.get('layer_norm_epsilon', 1e-5),
                       tie_embeddings=hf.get('tie_word_embeddings', True))
    sd = {}
    for k, v in w.items():
        k = k.removeprefix('transformer.')
        if k.endswith(('.attn.bias', '.attn.masked_bias')):
            continue  # causal-mask buffers, not weights
        if k != 'lm_head.weight':
            k = 'transformer.' + k
        sd[k] = v.t() if k.endswith(HF_CONV1D) else v
    if config.tie_embeddings:
        sd['lm_head.weight'] = sd['transformer.wte.weight']
    return config, sd


# model_type in config.json -> its converter: (config dict, tensors by name, folder) -> (GPTConfig, state dict)
HF_FAMILIES = {'llama': _from_llama, 'gpt_neox': _from_gpt_neox, 'opt': _from_opt, 'gpt2': _from_gpt2}
