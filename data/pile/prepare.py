"""
The Pile (or any large corpus in jsonl or parquet files) as token ids, streamed: memory stays flat however big the
corpus is, --max_tokens stops at the paper's budget, and a crashed run continues where it stopped. Default
tokenizer: 'smollm2', the SmolLM2 teacher's, because LET needs student and teacher to share one vocabulary.

Where the Pile is today (from reports and public download scripts, not checked against the hub from here):
EleutherAI/pile is gone from the Hugging Face hub; monology/pile-uncopyrighted, the Pile without its copyrighted
subsets (so not exactly the paper's data), is the copy most people use: train/00.jsonl.zst .. train/29.jsonl.zst,
with val.jsonl.zst and test.jsonl.zst at the top of the repository. With huggingface_hub's `hf` command (older
versions: `huggingface-cli download`, same options):
    hf download monology/pile-uncopyrighted --repo-type dataset --include "train/00.jsonl.zst" --local-dir pile
    hf download monology/pile-uncopyrighted --repo-type dataset --include "val.jsonl.zst" --local-dir pile
(--include "train/0[0-3].jsonl.zst": shards 00-03.) How many shards hold 20B tokens is not measured here.

    # the paper's budget: config/let_pile.py reads 19,073 steps x 1,048,576 = 19,999,490,048 tokens, no window twice
    python data/pile/prepare.py --input 'pile/train/*.jsonl.zst' --val_input pile/val.jsonl.zst --max_tokens 20e9
    # parquet files (pip install ".[data]") whose text is in the column 'content'
    python data/pile/prepare.py --input 'corpus/*.parquet' --text_field content --max_tokens 20e9
    # through the `datasets` library (streaming), when it is installed and online
    python data/pile/prepare.py --hf_dataset monology/pile-uncopyrighted

Inputs: .jsonl or .json (a JSON object per line), plain, .gz or .zst; .parquet, streamed a row group at a time.
--text_field names the field or column (default 'text'). Without --val_input the first --val_docs documents
become val.bin, the rest train.bin. Output order is the input order (files sorted by name within each pattern),
whatever --num_proc. Each document ends with the tokenizer's <|endoftext|> (a blank line for 'byte').

--max_tokens N (20e9 or 20000000000) ends train.bin at a document boundary once it holds N tokens: the document
that reaches N is kept whole, so train.bin holds N to N + (its length - 1) tokens; input past it is never read.
meta.json records max_tokens beside train_tokens. val.bin does not count.

Resuming: after every input file and every COMMIT_EVERY_DOCS documents the bins are fsynced, then progress.json
(the settings, how far the input was consumed, each bin's length) is atomically replaced. Re-running the same
command cuts the bins back to those lengths, skips what is done without tokenising it, and goes on, byte-identical
to an uninterrupted run. A re-run with other inputs (paths, sizes, times), tokenizer, --text_field, --val_docs,
--max_docs or --max_tokens is refused; --restart discards the unfinished run. An input error (a bad line, an empty
split) deletes it: fixing it changes the inputs anyway.

--tokenizer is a built-in name (byte, gpt2, smollm2) or a Hugging Face tokenizer: a model folder, its
tokenizer.json, or a hub name; the data goes to data/pile/<its label>/ (e.g. --tokenizer=EleutherAI/pythia-160m
-> data/pile/pythia-160m/). Vocabularies over 65,536 ids (Llama-3) are written as uint32.
"""
import argparse
import collections
import contextlib
import fcntl
import glob
import gzip
import importlib.util
import io
import json
import math
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # repo root: `tokenizer` and `data.common`
from data.common import DataError
from data.write import begin, doc_separator, finish, load_tokenizer, token_dtype
from data.tokenizer import dataset_label, get_tokenizer

DOCS_PER_CHUNK = 256  # one unit of work for a tokenizer process: big enough to amortise the pickling
COMMIT_EVERY_DOCS = 100_000  # a crash loses at most this much tokenising (minutes), besides the current file's rest
PARQUET_BATCH_ROWS = 1024  # rows turned into Python strings at once; pyarrow holds one row group's column
PROGRESS, SPLITS = "progress.json", ("train", "val")
START_OVER = "re-run with --restart to start over"


def parse_count(value, option="--max_tokens"):
    """20e9, '20e9', '2e10' or '20_000_000_000' -> 20000000000; anything but a positive whole number is a DataError."""
    if value is None:
        return None
    text = str(value).strip().replace("_", "")
    try:
        number = int(text)
    except ValueError:
        try:
            real = float(text)
        except ValueError:
            real = math.nan
        number = int(real) if math.isfinite(real) and real == int(real) else 0
    if isinstance(value, bool) or number < 1:
        raise DataError(f"{option} {value!r}: expected a positive whole number of tokens, such as 20e9 or 20000000000")
    return int(number)


def input_format(path):
    """'jsonl' or 'parquet' from a file's name; anything else is a DataError, not a guess."""
    base, ext = os.path.splitext(path)
    if ext == ".parquet":
        return "parquet"
    if ext in (".gz", ".zst"):
        ext = os.path.splitext(base)[1]
    if ext in (".jsonl", ".json"):
        return "jsonl"
    raise DataError(f"{path}: unknown format; expected .jsonl or .json (plain, .gz or .zst) or .parquet")


def expand_inputs(patterns, text_field):
    """Glob patterns -> sorted file list per pattern, each file checked as far as it can be without reading it."""
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise DataError(f"--input/--val_input {pattern!r} matches no file")
        paths += matches
    formats = [input_format(path) for path in paths]
    if any(path.endswith(".zst") for path in paths) and importlib.util.find_spec("zstandard") is None:
        raise DataError('reading .zst files needs zstandard: pip install ".[data]" (or pip install zstandard)')
    if "parquet" in formats:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError('reading .parquet files needs pyarrow: pip install ".[data]"') from None
        for path in (p for p, f in zip(paths, formats) if f == "parquet"):  # footers only: cheap, and fails early
            try:
                schema = pq.read_schema(path)
            except Exception as e:  # pyarrow's ArrowInvalid and OSError: not a parquet file
                raise DataError(f"{path} is not a readable parquet file ({e})") from None
            if text_field not in schema.names:
                raise DataError(f"{path} has no column {text_field!r} (it has {schema.names}; see --text_field)")
    return list(zip(formats, paths))


def open_text(path):
    if path.endswith(".zst"):
        import zstandard  # optional dependency, checked in expand_inputs
        # the Pile's shards need a larger decompression window than zstandard's default allows
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(open(path, "rb"))
        return io.TextIOWrapper(reader, encoding="utf-8")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_jsonl(path, text_field, skip):
    """The texts of a jsonl file (one document per non-blank line), but for the first `skip` documents."""
    with open_text(path) as f:
        doc = 0
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            doc += 1
            if doc <= skip:  # already in the bins: counted, not even parsed
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise DataError(f"{path}:{line_number} is not a JSON object") from None
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise DataError(f"{path}:{line_number} has no {text_field!r} field holding a text (see --text_field)")
            yield record[text_field]


def read_parquet(path, text_field, skip):
    """The texts of one column of a parquet file, PARQUET_BATCH_ROWS rows at a time, but for the first `skip` rows:
    whole row groups among them are never read."""
    import pyarrow.parquet as pq
    with open(path, "rb") as raw:  # closed on every way out, whatever pyarrow's version
        f = pq.ParquetFile(raw)
        groups, row = list(range(f.num_row_groups)), skip
        while groups and skip >= f.metadata.row_group(groups[0]).num_rows:
            skip -= f.metadata.row_group(groups.pop(0)).num_rows
        for batch in f.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=groups, columns=[text_field]):
            texts = batch.column(0).to_pylist()[skip:]
            skip = max(0, skip - batch.num_rows)
            for text in texts:
                if not isinstance(text, str):
                    raise DataError(f"{path}: row {row} of column {text_field!r} holds {text!r}, not a text")
                row += 1
                yield text


def read_hf(name, split, text_field, skip):
    import datasets  # checked in prepare
    dataset = datasets.load_dataset(name, split=split, streaming=True)
    for i, example in enumerate(dataset):
        if i >= skip:  # a stream has no random access: what is in the bins is read again, not tokenised
            if not isinstance(example.get(text_field), str):
                raise DataError(f"{name}[{split}] example {i} has no {text_field!r} text (see --text_field)")
            yield example[text_field]


def read_source(fmt, where, text_field, skip):
    """The texts of one input (a file, or a `datasets` stream) from document `skip` on."""
    if fmt == "hf":
        return read_hf(*where, text_field, skip)
    return (read_parquet if fmt == "parquet" else read_jsonl)(where, text_field, skip)


def chunks(sources, text_field, first, skip, counts, val_head, train_limit):
    """(input index, split, texts, last): up to DOCS_PER_CHUNK documents of one input and one split, in output
    order from document `skip` of input `first` on, `counts` documents per split being written. `last` marks an
    input's final chunk (maybe empty): progress may then record the input as done."""
    counts = dict(counts)
    for index in range(first, len(sources)):
        role, fmt, where = sources[index]
        skip = skip if index == first else 0
        batch, split = [], role
        with contextlib.closing(read_source(fmt, where, text_field, skip)) as texts:
            for text in texts:
                doc_split = "val" if role == "val" or counts["val"] < val_head else "train"
                if doc_split == "train" and train_limit is not None and counts["train"] >= train_limit:
                    yield index, split, batch, False
                    return
                if batch and (doc_split != split or len(batch) >= DOCS_PER_CHUNK):
                    yield index, split, batch, False
                    batch = []
                batch.append(text)
                split = doc_split
                counts[split] += 1
        yield index, split, batch, True


# each tokenizer process builds its own tokenizer once (tokenizers need not be picklable), from its spec: a built-in
# name or a local path, so a hub name is downloaded once, by the parent
_tok = None


def init_worker(tokenizer_spec):
    global _tok
    _tok = get_tokenizer(tokenizer_spec)


def tokenize_chunk(chunk):
    """-> (index, split, number of documents, their ids one after another, where each document ends, last)."""
    index, split, texts, last = chunk
    separator = doc_separator(_tok)
    dtype = token_dtype(_tok.vocab_size)
    docs = [np.array(_tok.encode(text) + separator, dtype=dtype) for text in texts]
    ids = np.concatenate(docs) if docs else np.empty(0, dtype)
    return index, split, len(texts), ids, np.cumsum([len(d) for d in docs], dtype=np.int64), last


def tokenized_chunks(chunk_iter, tokenizer, num_proc):
    """tokenize_chunk of every chunk, in input order, by num_proc processes."""
    if num_proc == 1:  # in-process: easy to debug, and the reference the parallel path must match
        init_worker(tokenizer)
        yield from map(tokenize_chunk, chunk_iter)
        return
    # not pool.imap: it reads the input as fast as the workers go and queues their results without bound if
    # writing falls behind; a window of 2 chunks per process keeps memory flat and the output in input order
    with Pool(num_proc, initializer=init_worker, initargs=(tokenizer,)) as pool:
        pending = collections.deque()
        for chunk in chunk_iter:
            pending.append(pool.apply_async(tokenize_chunk, (chunk,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def file_identity(role, fmt, where):
    """What a resume compares an input by: a file's path, size and modification time (reading 10+ GB shards for a
    checksum would cost what resuming saves); a `datasets` stream by its name only."""
    if fmt == "hf":
        return [role, "hf", *where]
    stat = os.stat(where)
    return [role, os.path.abspath(where), stat.st_size, stat.st_mtime_ns]


def load_progress(out_dir, settings, itemsize):
    """The state to continue from: progress.json's when it holds a run of these settings whose bins are intact, a
    fresh one when there is none; a run of other settings is a DataError saying what differs."""
    path = os.path.join(out_dir, PROGRESS)
    if not os.path.exists(path):
        return dict(settings=settings, file=0, skip=0, docs=dict.fromkeys(SPLITS, 0), tokens=dict.fromkeys(SPLITS, 0))
    try:
        with open(path) as f:
            state = json.load(f)
        saved, ends = dict(state["settings"]), [state["tokens"][split] * itemsize for split in SPLITS]
        state["file"] + state["skip"] + sum(state["docs"][split] for split in SPLITS)  # all there, all numbers
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is unreadable ({e}); {START_OVER}") from None
    if saved != settings:
        changed = [key for key in sorted(set(saved) | set(settings)) if saved.get(key) != settings.get(key)]
        described = [f"{key} (was {saved.get(key)!r}, now {settings.get(key)!r})" if key != "inputs"
                     else "inputs (the files, their sizes or modification times)" for key in changed]
        raise DataError(f"{out_dir} holds an unfinished run with other settings: {'; '.join(described)}; repeat that "
                        f"run's command to finish it, or {START_OVER}")
    for split, end in zip(SPLITS, ends):
        bin_path = os.path.join(out_dir, f"{split}.bin")
        if not os.path.isfile(bin_path) or os.path.getsize(bin_path) < end:
            raise DataError(f"{bin_path} is missing or shorter than {path} records; {START_OVER}")
    return state


@contextlib.contextmanager
def locked(out_dir):
    """One prepare.py at a time per out_dir: two appending to the same bins would interleave their documents."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "prepare.lock")
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataError(f"another prepare.py is writing {out_dir}: wait for it or give another --out_dir") from None
        try:
            yield
        finally:
            os.remove(path)


def prepare(tokenizer="smollm2", input=None, val_input=None, hf_dataset=None, hf_split="train",
            text_field="text", val_docs=None, max_docs=None, num_proc=None, out_dir=None, max_tokens=None,
            restart=False):
    """Tokenize a corpus into out_dir (default data/pile/<tokenizer's label>/), continuing an interrupted run of the
    same settings; returns out_dir. Arguments as the CLI."""
    t0 = time.time()
    input, val_input = ([p] if isinstance(p, str) else p for p in (input, val_input))  # one path or a list
    # everything a user can get wrong is checked before the (long) tokenizing starts and before out_dir is touched
    max_tokens = parse_count(max_tokens)
    if bool(input) == bool(hf_dataset):
        raise DataError("give exactly one of --input (local jsonl or parquet files) or --hf_dataset")
    for option, value, least in (("--val_docs", None if val_input else val_docs, 1), ("--max_docs", max_docs, 1),
                                 ("--num_proc", num_proc, 0)):
        if value is not None and value < least:
            raise DataError(f"{option} {value}: must be at least {least}")
    if hf_dataset and importlib.util.find_spec("datasets") is None:
        raise DataError("--hf_dataset needs the `datasets` library: pip install datasets")
    val_files = expand_inputs(val_input, text_field) if val_input else []
    train_files = expand_inputs(input, text_field) if input else [("hf", (hf_dataset, hf_split))]
    sources = [("val", *f) for f in val_files] + [("train", *f) for f in train_files]
    if val_docs is None:  # 10,000 documents, or a tenth of a --max_docs trial
        val_docs = 10_000 if max_docs is None else max(1, max_docs // 10)
    val_head = 0 if val_input else val_docs  # documents of the training input that go to val.bin
    if max_docs is not None and not val_input:
        if val_docs >= max_docs:
            raise DataError(f"--val_docs {val_docs} leaves no training documents out of --max_docs {max_docs}")
        max_docs -= val_docs  # --max_docs counts the documents read from the input, val's head included
    tok = load_tokenizer(tokenizer)
    out_dir = str(out_dir or os.path.join(HERE, dataset_label(tok.name)))
    num_proc = num_proc or os.cpu_count()
    dtype = token_dtype(tok.vocab_size)
    settings = dict(tokenizer=tok.name, inputs=[file_identity(*source) for source in sources], text_field=text_field,
                    val_docs=val_head, max_docs=max_docs, max_tokens=max_tokens)

    with locked(out_dir):
        if restart and os.path.exists(os.path.join(out_dir, PROGRESS)):
            os.remove(os.path.join(out_dir, PROGRESS))
        state = load_progress(out_dir, settings, dtype.itemsize)
        if state["file"] or state["skip"]:
            print(f"resuming {out_dir} at document {state['skip']:,} of input {state['file'] + 1} of {len(sources)}")
        begin(out_dir)  # meta.json goes first: it must never vouch for bins being rewritten
        try:
            reached = write_bins(out_dir, tok, sources, text_field, state, val_head, max_docs, max_tokens, num_proc)
        except DataError:  # the input must change to get past it, and that refuses a resume anyway
            for name in (PROGRESS, "train.bin", "val.bin"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(out_dir, name))
            raise
        docs, tokens = state["docs"], state["tokens"]
        source = f"hf:{hf_dataset}[{hf_split}]" if hf_dataset else "files: " + " ".join(input)
        finish(out_dir, tok, tokens["train"], tokens["val"], source=source,
               val_source=("files: " + " ".join(val_input)) if val_input else f"the first {val_docs} documents",
               train_docs=docs["train"], val_docs=docs["val"], max_tokens=max_tokens)
        os.remove(os.path.join(out_dir, PROGRESS))  # after meta.json: a crash in between only redoes the tail
    if max_tokens is not None and not reached:
        print(f"warning: the input ran out at {tokens['train']:,} train tokens, short of --max_tokens {max_tokens:,}; "
              f"add input files to reach it", file=sys.stderr)
    print(f"{tok.name}: train {docs['train']:,} docs, {tokens['train']:,} tokens | "
          f"val {docs['val']:,} docs, {tokens['val']:,} tokens | {time.time() - t0:.1f}s -> {out_dir}")
    return out_dir


def write_bins(out_dir, tok, sources, text_field, state, val_head, train_limit, max_tokens, num_proc):
    """Append the documents after `state` to the bins, committing progress as it goes; updates `state` in place and
    returns whether train.bin reached max_tokens."""
    itemsize = token_dtype(tok.vocab_size).itemsize
    progress_path = os.path.join(out_dir, PROGRESS)
    docs, tokens = state["docs"], state["tokens"]
    reached, since_commit = False, 0
    with contextlib.ExitStack() as stack:
        bins = {}
        for split in SPLITS:
            bins[split] = stack.enter_context(open(os.path.join(out_dir, f"{split}.bin"), "ab"))
            bins[split].truncate(tokens[split] * itemsize)  # drops what was written after the last commit

        def commit():
            for f in bins.values():  # the bins reach the disk before the state that counts them
                f.flush()
                os.fsync(f.fileno())
            with open(f"{progress_path}.tmp", "w") as f:
                json.dump(state, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(f"{progress_path}.tmp", progress_path)  # atomic: the old state or the new, never half

        commit()
        bar = stack.enter_context(tqdm(unit="docs", unit_scale=True, initial=docs["train"] + docs["val"],
                                       desc=f"tokenizing ({tok.name}, {num_proc} proc)"))
        chunk_iter = chunks(sources, text_field, state["file"], state["skip"], docs, val_head, train_limit)
        # closed first on the way out: the tokenizer processes stop before the bins close
        results = stack.enter_context(contextlib.closing(tokenized_chunks(chunk_iter, tok.spec, num_proc)))
        for index, split, n, ids, ends, last in results:
            if split == "train" and max_tokens is not None and n and ends[-1] >= max_tokens - tokens["train"]:
                # the document that reaches the budget is kept whole; nothing after it is written or read
                n = int(np.searchsorted(ends, max_tokens - tokens["train"])) + 1
                ids, reached = ids[:ends[n - 1]], True
            if ids.size and ids.max() >= tok.vocab_size:
                raise ValueError(f"token id {ids.max()} out of range [0, {tok.vocab_size}) while writing {split}.bin")
            bins[split].write(ids.tobytes())
            docs[split] += n
            tokens[split] += ids.size
            state["skip"] += n
            if last:
                state["file"], state["skip"] = index + 1, 0
            bar.update(n)
            bar.set_postfix(train_tokens=tokens["train"], val_tokens=tokens["val"], refresh=False)
            if reached:
                break
            since_commit += n
            if last or since_commit >= COMMIT_EVERY_DOCS:
                commit()
                since_commit = 0
        if docs["train"] == 0 or docs["val"] == 0:
            raise DataError(f"a split got no documents ({docs}): give more input or a smaller --val_docs")
    return reached


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", action="append",
                        help="jsonl(.gz/.zst) or parquet file or glob; repeatable, read in the order given")
    parser.add_argument("--val_input", action="append", help="validation files (default: the first --val_docs)")
    parser.add_argument("--hf_dataset", help="a `datasets` name, streamed, instead of --input")
    parser.add_argument("--hf_split", default="train")
    parser.add_argument("--text_field", "--text_column", default="text",
                        help="the JSON field or parquet column holding a document's text")
    parser.add_argument("--tokenizer", default="smollm2",
                        help="byte | gpt2 | smollm2 | a Hugging Face folder, tokenizer.json or hub name")
    parser.add_argument("--val_docs", type=int, default=None,
                        help="documents for val.bin when there is no --val_input (default 10000, or max_docs/10)")
    parser.add_argument("--max_docs", type=int, default=None, help="documents of --input to read (val's head included)")
    parser.add_argument("--max_tokens", default=None, help="end train.bin at this many tokens (whole documents): 20e9")
    parser.add_argument("--num_proc", type=int, default=None, help="tokenizer processes (default: all CPUs)")
    parser.add_argument("--out_dir", default=None, help="default: data/pile/<tokenizer's label>/")
    parser.add_argument("--restart", action="store_true", help="discard an unfinished run in --out_dir, not resume it")
    args = parser.parse_args(argv)
    try:
        prepare(**vars(args))
    except DataError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
