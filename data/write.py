"""
Writes a dataset in the layout data/common.py reads (train.bin, val.bin, then meta.json, last): for the prepare
scripts. A run that dies half way leaves no meta.json, so the trainer refuses the directory.
"""
import json
import os

import numpy as np

from data.common import DataError


def token_dtype(vocab_size):
    """The smallest of uint16 and uint32 that holds every id of a vocabulary."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def check_vocab_fits(tok):
    if tok.vocab_size > 2**32:
        raise DataError(f"tokenizer {tok.name!r} has {tok.vocab_size} ids, too many for uint32 bins")


def load_tokenizer(spec):
    """The tokenizer a prepare script writes with (a built-in name, a Hugging Face folder, tokenizer.json or hub
    name: tokenizer.get_tokenizer); one it cannot load, or whose ids no bins hold, is a DataError."""
    from data.tokenizer import get_tokenizer
    try:
        tok = get_tokenizer(spec)
    except (OSError, ValueError, ImportError) as e:
        raise DataError(f"--tokenizer={spec}: {e}") from None
    check_vocab_fits(tok)
    return tok


def doc_separator(tok):
    """Token ids appended after every document: <|endoftext|>, or a blank line for tokenizers without one."""
    return [tok.eot_token] if tok.eot_token is not None else tok.encode("\n\n")


def begin(out_dir):
    """Start (re)writing a dataset: drop any old meta.json first, so stale metadata never sits beside new bins."""
    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.exists(meta_path):
        os.remove(meta_path)


class BinWriter:
    """Appends token ids to a temporary file, renamed to `path` only if the `with` block ends without error."""

    def __init__(self, path, vocab_size):
        self.path, self.vocab_size = path, vocab_size
        self.dtype = token_dtype(vocab_size)
        self.tmp_path = f"{path}.{os.getpid()}.tmp"  # per process: two runs on one out_dir cannot mix
        self.num_tokens = 0

    def __enter__(self):
        self.file = open(self.tmp_path, "wb")
        return self

    def write(self, ids):
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token id out of range [0, {self.vocab_size}) while writing {self.path}")
        ids.astype(self.dtype, copy=False).tofile(self.file)
        self.num_tokens += ids.size

    def __exit__(self, exc_type, exc, tb):
        self.file.close()
        if exc_type is None:
            os.replace(self.tmp_path, self.path)
        else:
            os.remove(self.tmp_path)  # never leave a partial file that looks like data
        return False


def finish(out_dir, tok, train_tokens, val_tokens, source, **extra):
    """Write meta.json (atomically, last): from here on the directory is a complete dataset."""
    dtype = token_dtype(tok.vocab_size)
    meta = dict(tokenizer=tok.name, vocab_size=tok.vocab_size, dtype=dtype.name,
                train_tokens=int(train_tokens), val_tokens=int(val_tokens), source=source,
                eot_token=tok.eot_token, **extra)
    if getattr(tok, "source", None):  # a Hugging Face tokenizer: where it came from, for people (the name is checked)
        meta["tokenizer_source"] = tok.source
    for split in ("train", "val"):  # cheap guard against a writer bug: meta must describe the files beside it
        size = os.path.getsize(os.path.join(out_dir, f"{split}.bin"))
        assert size == meta[f"{split}_tokens"] * dtype.itemsize, (split, size)
    tmp_path = os.path.join(out_dir, f"meta.json.{os.getpid()}.tmp")
    with open(tmp_path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(tmp_path, os.path.join(out_dir, "meta.json"))
    return meta
