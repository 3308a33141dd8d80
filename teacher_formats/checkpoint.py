"""
.pt checkpoints as teachers: this repo's (train.py's FORMAT, which names its tokenizer) and nanoGPT's ckpt.pt
(which does not: a GPT-2-sized vocabulary means GPT-2 BPE). Read through components.checkpoint.read_checkpoint,
so a file holding Python objects beyond tensors is refused unless the caller trusts it.
"""

from components.checkpoint import FORMAT, UnsafeCheckpoint, read_checkpoint
from configurator import ConfigError
from data.tokenizer import GPT2_VOCAB, is_tokenizer_name
from model import GPT, GPTConfig


def load_checkpoint_teacher(path, trust=False):
    """(model.py's GPT, tokenizer name) of a checkpoint file; trust: read_checkpoint's opt-in to unpickling."""
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
