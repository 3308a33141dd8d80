"""
The on-disk layout every dataset shares, and the one place that writes it.

A dataset is a directory holding
    train.bin, val.bin   flat token ids, uint16: np.memmap(path, dtype=np.uint16, mode='r')
    meta.json            {"tokenizer", "vocab_size", "dtype", "train_tokens", "val_tokens", "source", ...}
meta.json is written last and removed first, so a directory with a meta.json always holds complete bins
that match it; a run that dies half way leaves no meta.json and the trainer refuses the directory.
"""
import json
import os

import numpy as np

DTYPE = np.uint16  # 2 bytes per token; every tokenizer we use has fewer than 2**16 ids


class DataError(Exception):
    """A problem the user can fix (missing input, bad option): the scripts print it without a traceback."""


def check_vocab_fits(tok):
    if tok.vocab_size > np.iinfo(DTYPE).max + 1:
        raise DataError(f"tokenizer {tok.name!r} has {tok.vocab_size} ids, too many for {np.dtype(DTYPE).name} "
                        f"bins; pick a tokenizer with at most {np.iinfo(DTYPE).max + 1} ids")


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
        self.tmp_path = f"{path}.{os.getpid()}.tmp"  # per process: two runs on one out_dir cannot mix
        self.num_tokens = 0

    def __enter__(self):
        self.file = open(self.tmp_path, "wb")
        return self

    def write(self, ids):
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token id out of range [0, {self.vocab_size}) while writing {self.path}")
        ids.astype(DTYPE, copy=False).tofile(self.file)
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
    meta = dict(tokenizer=tok.name, vocab_size=tok.vocab_size, dtype=np.dtype(DTYPE).name,
                train_tokens=int(train_tokens), val_tokens=int(val_tokens), source=source,
                eot_token=tok.eot_token, **extra)
    for split in ("train", "val"):  # cheap guard against a writer bug: meta must describe the files beside it
        size = os.path.getsize(os.path.join(out_dir, f"{split}.bin"))
        assert size == meta[f"{split}_tokens"] * np.dtype(DTYPE).itemsize, (split, size)
    tmp_path = os.path.join(out_dir, f"meta.json.{os.getpid()}.tmp")
    with open(tmp_path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(tmp_path, os.path.join(out_dir, "meta.json"))
    return meta
