"""
The Pile (or any large jsonl corpus with a "text" field) as token ids, streamed: memory stays flat however big
the corpus is. Default tokenizer: 'smollm2', the SmolLM2 teacher's, because LET needs student and teacher to
share one vocabulary.

    # local shards, e.g. the Pile's 00.jsonl.zst ... 29.jsonl.zst and val.jsonl.zst
    python data/pile/prepare.py --input 'pile/train/*.jsonl.zst' --val_input pile/val.jsonl.zst
    # a quick trial: 20k documents, the first 2k of them for validation
    python data/pile/prepare.py --input 'pile/train/00.jsonl.zst' --max_docs 20000
    # through the `datasets` library (streaming), when it is installed and online
    python data/pile/prepare.py --hf_dataset monology/pile-uncopyrighted

Without --val_input the first --val_docs documents become val.bin and the rest train.bin. Output order is the
input order (files sorted by name within each --input pattern), whatever --num_proc, so reruns are identical.
Each document is followed by the tokenizer's <|endoftext|> (a blank line for 'byte').

--tokenizer is a built-in name (byte, gpt2, smollm2) or a Hugging Face tokenizer: a model folder, its
tokenizer.json, or a hub name; the data goes to data/pile/<its label>/ (e.g. --tokenizer=EleutherAI/pythia-160m
-> data/pile/pythia-160m/). Vocabularies over 65,536 ids (Llama-3) are written as uint32.
"""
import argparse
import collections
import glob
import gzip
import importlib.util
import io
import itertools
import json
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # repo root: `tokenizer` and `data.common`
from data.common import BinWriter, DataError, begin, doc_separator, finish, load_tokenizer, token_dtype
from data.tokenizer import dataset_label, get_tokenizer

DOCS_PER_CHUNK = 256  # one unit of work for a tokenizer process: big enough to amortise the pickling


def expand_inputs(patterns):
    """Glob patterns -> sorted file list per pattern; a pattern that matches nothing is an error, not a no-op."""
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise DataError(f"--input/--val_input {pattern!r} matches no file")
        paths += matches
    if any(path.endswith(".zst") for path in paths) and importlib.util.find_spec("zstandard") is None:
        raise DataError("reading .zst files needs the zstandard package: pip install zstandard")
    return paths


def open_text(path):
    if path.endswith(".zst"):
        import zstandard  # optional dependency, checked in expand_inputs
        # the Pile's shards need a larger decompression window than zstandard's default allows
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(open(path, "rb"))
        return io.TextIOWrapper(reader, encoding="utf-8")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_jsonl(paths, text_field):
    for path in paths:
        with open_text(path) as f:
            for line_number, line in enumerate(f, 1):
                if line.strip():
                    doc = json.loads(line)
                    if text_field not in doc:
                        raise DataError(f"{path}:{line_number} has no {text_field!r} field (see --text_field)")
                    yield doc[text_field]


def read_hf(name, split, text_field):
    try:
        import datasets
    except ImportError:
        raise DataError("--hf_dataset needs the `datasets` library: pip install datasets") from None
    dataset = datasets.load_dataset(name, split=split, streaming=True)
    return (example[text_field] for example in dataset)


def documents(train_texts, val_texts, val_docs, max_docs):
    """Yields (split, text) in output order: all val documents first, then train."""
    if val_texts is None:  # val takes the head of the training stream (the same iterator, so no overlap)
        val_texts = itertools.islice(train_texts, val_docs)
    yield from (("val", text) for text in val_texts)
    yield from (("train", text) for text in itertools.islice(train_texts, max_docs))


def chunks(docs):
    """Groups of up to DOCS_PER_CHUNK documents of one split, in order."""
    for split, group in itertools.groupby(docs, key=lambda item: item[0]):
        texts = (text for _, text in group)
        while batch := list(itertools.islice(texts, DOCS_PER_CHUNK)):
            yield split, batch


# each tokenizer process builds its own tokenizer once (tokenizers need not be picklable), from its spec: a built-in
# name or a local path, so a hub name is downloaded once, by the parent
_tok = None


def init_worker(tokenizer_spec):
    global _tok
    _tok = get_tokenizer(tokenizer_spec)


def tokenize_chunk(chunk):
    split, texts = chunk
    separator = doc_separator(_tok)
    dtype = token_dtype(_tok.vocab_size)
    ids = np.concatenate([np.array(_tok.encode(text) + separator, dtype=dtype) for text in texts])
    return split, len(texts), ids


def tokenized_chunks(docs, tokenizer, num_proc):
    """(split, num_docs, ids) per chunk of documents, in input order, tokenized by num_proc processes."""
    if num_proc == 1:  # in-process: easy to debug, and the reference the parallel path must match
        init_worker(tokenizer)
        yield from map(tokenize_chunk, chunks(docs))
        return
    # not pool.imap: it reads the input as fast as the workers go and queues their results without bound if
    # writing falls behind; a window of 2 chunks per process keeps memory flat and the output in input order
    with Pool(num_proc, initializer=init_worker, initargs=(tokenizer,)) as pool:
        pending = collections.deque()
        for chunk in chunks(docs):
            pending.append(pool.apply_async(tokenize_chunk, (chunk,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def prepare(tokenizer="smollm2", input=None, val_input=None, hf_dataset=None, hf_split="train",
            text_field="text", val_docs=None, max_docs=None, num_proc=None, out_dir=None):
    """Tokenize a corpus into out_dir (default data/pile/<tokenizer's label>/); returns out_dir. Arguments as the
    CLI."""
    t0 = time.time()
    input, val_input = ([p] if isinstance(p, str) else p for p in (input, val_input))  # one path or a list
    if bool(input) == bool(hf_dataset):
        raise DataError("give exactly one of --input (local jsonl files) or --hf_dataset")
    # check everything a user can get wrong before the (long) tokenizing starts
    train_texts = read_jsonl(expand_inputs(input), text_field) if input else read_hf(hf_dataset, hf_split, text_field)
    val_texts = read_jsonl(expand_inputs(val_input), text_field) if val_input else None
    if val_docs is None:  # 10,000 documents, or a tenth of a --max_docs trial
        val_docs = 10_000 if max_docs is None else max(1, max_docs // 10)
    if max_docs is not None and not val_input:
        if val_docs >= max_docs:
            raise DataError(f"--val_docs {val_docs} leaves no training documents out of --max_docs {max_docs}")
        max_docs -= val_docs  # --max_docs counts the documents read from the input, val's head included
    tok = load_tokenizer(tokenizer)
    out_dir = out_dir or os.path.join(HERE, dataset_label(tok.name))
    num_proc = num_proc or os.cpu_count()
    docs = documents(train_texts, val_texts, val_docs, max_docs)

    begin(out_dir)
    writers = {split: BinWriter(os.path.join(out_dir, f"{split}.bin"), tok.vocab_size) for split in ("train", "val")}
    num_docs = {"train": 0, "val": 0}
    with writers["train"], writers["val"]:
        with tqdm(unit="docs", unit_scale=True, desc=f"tokenizing ({tok.name}, {num_proc} proc)") as bar:
            for split, n, ids in tokenized_chunks(docs, tok.spec, num_proc):
                writers[split].write(ids)
                num_docs[split] += n
                bar.update(n)
                bar.set_postfix(train_tokens=writers["train"].num_tokens, val_tokens=writers["val"].num_tokens,
                                refresh=False)
        if num_docs["train"] == 0 or num_docs["val"] == 0:  # raised inside `with`: no bins are left behind
            raise DataError(f"a split got no documents ({num_docs}): give more input or a smaller --val_docs")

    source = f"hf:{hf_dataset}[{hf_split}]" if hf_dataset else "jsonl: " + " ".join(input)
    finish(out_dir, tok, writers["train"].num_tokens, writers["val"].num_tokens, source=source,
           val_source=("jsonl: " + " ".join(val_input)) if val_input else f"the first {val_docs} documents",
           train_docs=num_docs["train"], val_docs=num_docs["val"])
    print(f"{tok.name}: train {num_docs['train']:,} docs, {writers['train'].num_tokens:,} tokens | "
          f"val {num_docs['val']:,} docs, {writers['val'].num_tokens:,} tokens | {time.time() - t0:.1f}s "
          f"-> {out_dir}")
    return out_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", action="append", help="jsonl / jsonl.gz / jsonl.zst file or glob; repeatable")
    parser.add_argument("--val_input", action="append", help="validation files (default: the first --val_docs)")
    parser.add_argument("--hf_dataset", help="a `datasets` name, streamed, instead of --input")
    parser.add_argument("--hf_split", default="train")
    parser.add_argument("--text_field", default="text", help="the JSON field holding a document's text")
    parser.add_argument("--tokenizer", default="smollm2",
                        help="byte | gpt2 | smollm2 | a Hugging Face folder, tokenizer.json or hub name")
    parser.add_argument("--val_docs", type=int, default=None,
                        help="documents for val.bin when there is no --val_input (default 10000, or max_docs/10)")
    parser.add_argument("--max_docs", type=int, default=None,
                        help="read at most this many documents of --input (val included)")
    parser.add_argument("--num_proc", type=int, default=None, help="tokenizer processes (default: all CPUs)")
    parser.add_argument("--out_dir", default=None, help="default: data/pile/<tokenizer's label>/")
    args = parser.parse_args()
    try:
        prepare(**vars(args))
    except DataError as e:
        sys.exit(f"error: {e}")
