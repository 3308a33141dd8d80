"""
The on-disk layout every dataset shares, and the one place that reads and checks it (for train.py, speedup.py,
eval.py); data/write.py is the one place that writes it (for the prepare scripts).

A dataset is a directory holding
    train.bin, val.bin   flat token ids: np.memmap(path, dtype=meta['dtype'], mode='r')
    meta.json            {"tokenizer", "vocab_size", "dtype", "train_tokens", "val_tokens", "source", ...}
The ids are uint16 (2 bytes) when the vocabulary has at most 65,536 of them, else uint32 (Llama-3's 128,256); a
meta.json without "dtype" (older datasets) means uint16.
meta.json is written last and removed first, so a directory with a meta.json always holds complete bins
that match it; a run that dies half way leaves no meta.json and the trainer refuses the directory.
"""
import json
import os
import re

import numpy as np

from configurator import ConfigError


DTYPES = ('uint16', 'uint32')  # the ids' types on disk: uint16 up to 65,536 ids, else uint32
DATA_DIR = os.path.dirname(os.path.abspath(__file__))
# the tokenizer a dataset records (meta.json) and a checkpoint keeps: a built-in name, or a Hugging Face tokenizer's
# '<label>-<fingerprint>' (data/tokenizer.py makes them)
TOKENIZERS = ('byte', 'gpt2', 'smollm2')
FINGERPRINT_NAME = re.compile(r'^[a-z0-9][a-z0-9._-]*-([0-9a-f]{10})$')  # 'pythia-160m-3f9c2a1e7b'


class DataError(ConfigError):
    """A problem the user can fix (missing input, bad option, bad files): printed without a traceback."""


PREPARE_HINT = "run the dataset's prepare script (e.g. python data/shakespeare/prepare.py --tokenizer=byte)"


def resolve_data_dir(dataset):
    """'shakespeare/byte' -> <repo>/data/shakespeare/byte; an absolute path stays as it is."""
    return dataset if os.path.isabs(dataset) else os.path.join(DATA_DIR, dataset)


def is_tokenizer_name(name):
    """A name a dataset or checkpoint may record: a built-in one, or '<label>-<fingerprint>'."""
    return name in TOKENIZERS or bool(FINGERPRINT_NAME.match(str(name)))


def same_vocabulary(a, b):
    """Whether two tokenizer names give the same ids: the same built-in, or the same fingerprint (labels aside)."""
    def identity(name):
        match = FINGERPRINT_NAME.match(name)
        return match.group(1) if match else name
    return identity(a) == identity(b)


def check_dataset(data_dir):
    """Reads meta.json and checks the bins against it; returns meta. Every failure is a DataError naming the fix."""
    meta_path = os.path.join(data_dir, "meta.json")
    if not os.path.isfile(meta_path):
        raise DataError(f"dataset not found: {meta_path} is missing; {PREPARE_HINT}")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        meta["tokenizer"], vocab_size = str(meta["tokenizer"]), int(meta["vocab_size"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{meta_path} is not valid dataset metadata ({e}); {PREPARE_HINT}") from None
    meta["dtype"] = meta.get("dtype", "uint16")
    if meta["dtype"] not in DTYPES:
        raise DataError(f"{meta_path}: dtype {meta['dtype']!r} is not supported; the bins must be one of {DTYPES}")
    if vocab_size > np.iinfo(meta["dtype"]).max + 1:
        raise DataError(f"{meta_path}: a vocabulary of {vocab_size} ids does not fit {meta['dtype']} bins; "
                        f"{PREPARE_HINT}")
    itemsize = np.dtype(meta["dtype"]).itemsize
    for split in ("train", "val"):
        path = os.path.join(data_dir, f"{split}.bin")
        if not os.path.isfile(path):
            raise DataError(f"dataset incomplete: {path} is missing; {PREPARE_HINT}")
        size = os.path.getsize(path)
        if size == 0:
            raise DataError(f"{path} is empty; {PREPARE_HINT}")
        if size % itemsize:
            what = "an odd number of bytes" if itemsize == 2 else f"{size} bytes, not a multiple of {itemsize}"
            raise DataError(f"{path} has {what}: truncated, or not {meta['dtype']} tokens; {PREPARE_HINT}")
        expected = meta.get(f"{split}_tokens")
        if expected is not None and size // itemsize != expected:
            raise DataError(f"{path} holds {size // itemsize} tokens but meta.json says {expected}: the data and its "
                            f"metadata disagree (truncated or mixed-up files); {PREPARE_HINT}")
        top = max_token(np.memmap(path, dtype=meta["dtype"], mode="r"))
        if top >= vocab_size:
            raise DataError(f"{path} holds token id {top}, outside the vocabulary of {vocab_size} in meta.json; "
                            f"the data was made with another tokenizer: {PREPARE_HINT}")
    return meta


def bin_dtype(path):
    """The dtype of a .bin file: what the meta.json beside it says (uint16 for datasets that predate the key)."""
    meta_path = os.path.join(os.path.dirname(path), "meta.json")
    if not os.path.isfile(meta_path):
        return "uint16"
    with open(meta_path) as f:
        return json.load(f).get("dtype", "uint16")


def max_token(data, chunk=1 << 20):
    """The largest id: a full scan up to 512M tokens (about a second per GB), beyond that 256 evenly spaced chunks
    of 1M tokens, so a Pile-sized file does not cost minutes at every start."""
    if len(data) <= 512 * chunk:
        starts = range(0, len(data), chunk)
    else:
        starts = np.linspace(0, len(data) - chunk, 256).astype(np.int64)
    return max(int(data[i:i + chunk].max()) for i in starts)


class TokenWindows:
    """A split's tokens cut into non-overlapping windows of block_size + 1 tokens (inputs and shifted targets).
    Training visits the windows in a seeded random permutation, a new one each epoch: sample g of the run is
    window perm_{g // n}[g % n], a pure function of (seed, g). So runs with one seed see the same batches, a
    resumed run continues exactly, and ranks that read different sample numbers never share a window.
    Evaluation reads a fixed set of windows spread over the split, so every evaluation scores the same text."""

    def __init__(self, path, block_size, seed, dtype=None):
        self.path, self.block_size, self.seed = path, block_size, seed
        self.dtype = np.dtype(dtype or bin_dtype(path))
        n_tokens = os.path.getsize(path) // self.dtype.itemsize
        self.n = (n_tokens - 1) // block_size
        if self.n < 1:
            raise DataError(f"{path} holds {n_tokens} tokens: too few for one window of block_size={block_size}")
        self._perm_epoch, self._perm = None, None

    def train_windows(self, first, count):
        """Window indices of samples first .. first+count-1 of the run's sample order."""
        out = []
        for g in range(first, first + count):
            epoch, i = divmod(g, self.n)
            if epoch != self._perm_epoch:
                rng = np.random.default_rng([self.seed, epoch])
                self._perm, self._perm_epoch = rng.permutation(self.n), epoch
            out.append(int(self._perm[i]))
        return out

    def eval_windows(self, first, count, total):
        """Windows first .. first+count-1 of a fixed set of `total` windows spread evenly over the split."""
        stride = max(1, self.n // total)
        return [(j * stride) % self.n for j in range(first, first + count)]

    def read(self, windows):
        """(x, y) int64 arrays of shape (len(windows), block_size): the windows' tokens, and the same shifted by
        one."""
        T = self.block_size
        data = np.memmap(self.path, dtype=self.dtype, mode="r")  # re-opened per batch: a long-lived memmap leaks
        rows = np.stack([data[w * T: w * T + T + 1] for w in windows]).astype(np.int64)
        # contiguous: pinned and copied to a GPU in one piece, while the device works (train.py)
        return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])
