"""Hugging Face files written in the tests, by the Hugging Face libraries themselves (test-only dependencies):
byte-level BPE tokenizers trained here with `tokenizers`, one per teacher family's pre-tokenization, and tiny random
models of each teacher family saved with transformers' save_pretrained. No network."""

import glob
import json
import os
import random

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Llama-3's split pattern, as its tokenizer.json spells it (a Split pre-tokenizer before a regex-free ByteLevel)
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")

# text the tokenizers never saw in training: prose, code, numbers, runs of whitespace, accents written both
# composed and decomposed (NFC changes the second), scripts and emoji outside the training text
HELD_OUT = [
    "The old lighthouse keeper kept a notebook in which he wrote down the weather every morning. He did this for\n"
    "forty years, long after the lamp had been replaced by an automatic light that needed nobody to tend it.",
    "def f(x):\n    return x**2  # square\n\n\n\tif a==b:  pass\n        y = [1, 22, 333, 4444, 55555]   \n",
    "In 1999, 12345 people paid $3.50 each; x   42  y; it's, I'm, we've, they'll, he'd, THEY'RE, She'S",
    "naïve café (composed) vs nai\u0308ve cafe\u0301 (decomposed) — “quotes” 日本語のテキスト 😀👍🏽 Ω≈ç√∫",
    "   leading and trailing   \n\n\n",
    "tabs\t\tand\r\nwindows\r\nlines" + " " * 30 + "a long run of spaces",
]


def training_texts():
    """The repository's top-level Python files: plenty of English, code and numbers, the same on every machine."""
    return [open(path, encoding='utf-8').read() for path in sorted(glob.glob(os.path.join(REPO, '*.py')))]


def train_bpe(style, vocab_size=1000):
    """A byte-level BPE trained here, in the style of one teacher family's tokenizer: its Hugging Face Tokenizer
    (the reference) and its tokenizer.json as a dict.
    gpt2:    ByteLevel with GPT-2's regex (GPT-2, OPT)
    smollm:  Digits(individual_digits) then ByteLevel (SmolLM, SmolLM2)
    llama3:  Split(Llama-3's regex) then ByteLevel without its regex, ignore_merges (Llama-3)
    neox:    NFC normalizer, ByteLevel, added non-special tokens for runs of 2 to 24 spaces (GPT-NeoX, Pythia)
    opt:     gpt2's, with the ids of the merged tokens shuffled, so ids are not in merge order (OPT's are in the
             order of fairseq's frequency dictionary)
    big:     llama3's with every id moved up by 70,000: a vocabulary that needs uint32 bins"""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ['<|endoftext|>']
    tok = Tokenizer(models.BPE())
    tok.decoder = decoders.ByteLevel()
    if style in ('gpt2', 'opt', 'neox'):
        tok.pre_tokenizer = byte_level
    elif style == 'smollm':
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif style in ('llama3', 'big'):
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior='isolated', invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = ['<|begin_of_text|>', '<|end_of_text|>']
    if style == 'neox':
        tok.normalizer = normalizers.NFC()
        specials = ['<|endoftext|>', '<|padding|>']
    if style == 'opt':
        specials = ['<s>', '<pad>', '</s>', '<unk>']
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_texts(), trainer)
    if style == 'neox':
        tok.add_tokens([AddedToken(' ' * n, normalized=True) for n in range(24, 1, -1)])
    spec = json.loads(tok.to_str())
    if style in ('llama3', 'big'):
        spec['model']['ignore_merges'] = True
    if style == 'opt':
        vocab = spec['model']['vocab']
        merged = [t for t, i in vocab.items() if i >= 256 + len(specials)]
        ids = [vocab[t] for t in merged]
        random.Random(0).shuffle(ids)
        vocab.update(zip(merged, ids))
    if style == 'big':
        spec['model']['vocab'] = {t: i + 70_000 for t, i in spec['model']['vocab'].items()}
        spec['added_tokens'] = [dict(t, id=t['id'] + 70_000) for t in spec['added_tokens']]
    return Tokenizer.from_str(json.dumps(spec)), spec


def write_tokenizer(folder, spec):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'tokenizer.json'), 'w', encoding='utf-8') as f:
        json.dump(spec, f)
    return str(folder)


def hf_ids(hf_tokenizer, text):
    """Ids as Hugging Face gives them for a document's text: a special token's text inside it stays text, as in
    this repo's tokenizers (tokenizer.py)."""
    hf_tokenizer.encode_special_tokens = True
    return hf_tokenizer.encode(text).ids


# -----------------------------------------------------------------------------
# tiny random models of each teacher family, as transformers writes them

def tiny_hf_model(family, vocab_size, seed=0):
    """A tiny random model of a teacher family, with large enough weights (std 0.2) that the attention is sharp and
    the logits large: a strict comparison. llama: grouped key/value heads, untied head; llama3: Llama 3's rotary
    scaling (its original context 16 tokens, shorter than the test's sequences), one key/value head, tied head;
    pythia: GPT-NeoX with parallel attention/MLP and rotary on a quarter of each head; opt: OPT-125M's shape."""
    transformers = pytest.importorskip('transformers')
    import torch
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=128)
    if family == 'llama':
        config = transformers.LlamaConfig(**common, intermediate_size=96, num_key_value_heads=2, rope_theta=10000.0,
                                          tie_word_embeddings=False, initializer_range=0.2)
        return transformers.LlamaForCausalLM(config).eval()
    if family == 'llama3':
        scaling = dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                       original_max_position_embeddings=16)
        config = transformers.LlamaConfig(**common, intermediate_size=96, num_key_value_heads=1, rope_theta=500000.0,
                                          rope_scaling=scaling, tie_word_embeddings=True, initializer_range=0.2)
        return transformers.LlamaForCausalLM(config).eval()
    if family == 'pythia':
        config = transformers.GPTNeoXConfig(**common, intermediate_size=256, rotary_pct=0.25,
                                            use_parallel_residual=True, initializer_range=0.2)
        return transformers.GPTNeoXForCausalLM(config).eval()
    if family == 'opt':
        config = transformers.OPTConfig(**common, ffn_dim=256, word_embed_proj_dim=64, init_std=0.2)
        return transformers.OPTForCausalLM(config).eval()
    raise ValueError(family)
