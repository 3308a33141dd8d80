"""
The on-disk layout every dataset shares: the one place that writes it (for the prepare scripts) and the one place
that reads and checks it (for train.py, speedup.py, eval.py).

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

import numpy as np

from configurator import ConfigError
from data.tokenizer import get_tokenizer

DTYPES = ('uint16', 'uint32')
DATA_DIR = os.path.dirname(os.path.abspath(__file__))


class DataError(ConfigError):
    """A problem the user can fix (missing input, bad option, bad files): printed without a traceback."""


def token_dtype(vocab_size):
    """The smallest of uint16 and uint32 that holds every id of a vocabulary."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def check_vocab_fits(tok):
    if tok.vocab_size > 2**32:
        raise DataError(f"tokenizer {tok.name!r} has {tok.vocab_size} ids, too many for uint32 bins")


def load_tokenizer(spec):
    """The tokenizer a prepare script writes with (a built-in name, a Hugging Face folder, tokenizer.json or hub
    name: tokenizer.get_tokenizer); one it cannot load, or whose ids no bins hold, is a DataError."""
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


# -----------------------------------------------------------------------------
# reading: checks before training, and token windows in a fixed order

PREPARE_HINT = "run the dataset's prepare script (e.g. python data/shakespeare/prepare.py --tokenizer=byte)"


def resolve_data_dir(dataset):
    """'shakespeare/byte' -> <repo>/data/shakespeare/byte; an absolute path stays as it is."""
    return dataset if os.path.isabs(dataset) else os.path.join(DATA_DIR, dataset)


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
