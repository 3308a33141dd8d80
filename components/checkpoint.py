"""
Checkpoints: one format, one reader, atomic writes, and the checks that make a resumed run continue exactly.

A checkpoint of train.py is a dict (FORMAT below) holding the plain student (never a compiled or data-parallel
wrapper), LET's projectors, the optimizer, the config, the iteration and what the log needs. The data position
and every random stream are functions of (seed, iteration), so the iteration is all a resume needs. The teacher
is never saved, only named (config['teacher']). A student's checkpoint can itself be a teacher (teacher.py).

One process or DDP: the dict is one file, out_dir/ckpt.pt. FSDP: no rank ever holds the whole student, so every
rank writes its own shards of the weights and optimizer into the folder out_dir/ckpt/, beside meta.pt: the same
dict without the weights and optimizer (components/distributed.py writes, reads and consolidates it).
"""

import dataclasses
import json
import os
import pickle
import re
import warnings
import zipfile

import numpy as np
import torch

from configurator import ConfigError
from model import GPTConfig

FORMAT = 'let-ckpt-v1'
META = 'meta.pt'  # in a sharded checkpoint's folder: everything but the weights and the optimizer

try:
    from numpy._core.multiarray import scalar as _numpy_scalar  # numpy >= 2
except ImportError:
    from numpy.core.multiarray import scalar as _numpy_scalar  # numpy 1

# What torch.load(weights_only=True) may rebuild besides tensors and plain containers: nothing here runs code
# named by the file. A nanoGPT-style checkpoint may hold numpy scalars (a loss or a metric kept as np.float64):
# numpy pickles one as scalar(dtype, its bytes), and the dtype is rebuilt with __setstate__, which torch allows
# only for classes listed here.
SAFE_GLOBALS = [
    # the numpy scalar constructor, under its name in files written by numpy 2 and by numpy 1
    (_numpy_scalar, 'numpy._core.multiarray.scalar'),
    (_numpy_scalar, 'numpy.core.multiarray.scalar'),
    np.dtype,  # the dtype inside each scalar (or saved alone)
    # the class of each boolean and numeric dtype (numpy.dtypes.Float64DType, Int64DType, Float32DType, ...):
    # torch checks it when the dtype's state is set; object, string and void dtypes stay out
    *dict.fromkeys(type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG'),
]


class UnsafeCheckpoint(ConfigError):
    """A checkpoint holding Python objects that only the full unpickler rebuilds, which can run code stored in
    the file: refused unless the user trusts the file."""


def check_writable(out_dir, rank=0):
    """out_dir must take files before anything is computed."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f'.write-test-{rank}')
        open(probe, 'w').close()
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"out_dir {out_dir!r} is not writable ({e.strerror}); choose another out_dir") from None


def save_checkpoint(path, state):
    """Written to path.tmp, flushed to disk, then renamed: a crash at any moment leaves the previous checkpoint."""
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _refused_globals(path, error):
    """The names of what the weights_only unpickler refused in path ('' when it refused nothing: the file is
    corrupt or not a pickle it parses): every unsafe global a zip-format file names, and the one in error."""
    names = set(re.findall(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", str(error)))
    names = {a or b for a, b in names}
    if zipfile.is_zipfile(path):
        try:
            names.update(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # a pickle the static scan cannot parse: the error's name, if any, is all there is
            pass
    return ', '.join(sorted(names))


def _why(error):
    """torch.load's error in one line, without the advice around the weights_only unpickler's own words."""
    text = str(error)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1].split('Check the documentation', 1)[0]
    return ' '.join(text.split())


def read_checkpoint(path, trust=False):
    """The dict in a .pt file of any origin (this repo's, nanoGPT's). Always weights_only, with SAFE_GLOBALS:
    unpickling anything else can run code stored in the file, so a file holding it is refused with
    UnsafeCheckpoint unless trust=True (--trust_checkpoint) says the user trusts it.

    A zip-format file (what torch.save writes) is memory-mapped: its tensors are views of the file, shared
    through the page cache by every process of a node that reads it, not a private copy in each; a legacy
    (non-zip) file cannot be mapped and is read whole."""
    mmap = zipfile.is_zipfile(path)
    try:
        if trust:
            return torch.load(path, map_location='cpu', weights_only=False, mmap=mmap)
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            # a corrupt file can look like an odd pickle protocol: torch warns before it fails, and the one
            # error below says it all
            warnings.filterwarnings('ignore', 'Detected pickle protocol')
            try:
                return torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
            except pickle.UnpicklingError as e:
                refused = _refused_globals(path, e)
                if not refused:
                    raise
    except Exception as e:
        raise ConfigError(f"checkpoint {path} cannot be read ({type(e).__name__}: {_why(e)}); it is corrupt "
                          f"or not a checkpoint. Move it away to start over, or point out_dir elsewhere") from None
    raise UnsafeCheckpoint(f"checkpoint {path} holds Python objects beyond tensors and plain data (it names "
                           f"{refused}); loading them would run code stored in the file, so it is refused. If you "
                           f"trust this file, pass --trust_checkpoint (train.py: --trust_checkpoint=True)")


def load_checkpoint(path, trust=False):
    """A checkpoint written by train.py, or a ConfigError that says what is wrong with the file. For a sharded
    checkpoint (a folder), its meta.pt: distributed.load_sharded reads the weights and the optimizer once the
    student is sharded. trust: read_checkpoint's."""
    ckpt = read_checkpoint(os.path.join(path, META) if os.path.isdir(path) else path, trust)
    if not isinstance(ckpt, dict) or ckpt.get('format') != FORMAT:
        raise ConfigError(f"{path} is not a checkpoint written by this train.py (format {FORMAT})")
    return ckpt


def checkpoint_path(out_dir, sharded):
    """Where a run saves and resumes: the file out_dir/ckpt.pt, or (sharded: FSDP) the folder out_dir/ckpt.
    A checkpoint of the other kind in out_dir is an error: each loads only into its own kind of run."""
    path, other = os.path.join(out_dir, 'ckpt'), os.path.join(out_dir, 'ckpt.pt')
    if not sharded:
        path, other = other, path
    if find_checkpoint(other) and not find_checkpoint(path):
        kind = "a DDP or one-process" if sharded else "an FSDP"
        fix = "data_parallel='ddp'" if sharded else "data_parallel='fsdp' under torchrun"
        raise ConfigError(f"{out_dir} holds a checkpoint of {kind} run ({other}); resume it with {fix}, or "
                          f"use another out_dir")
    return path


def find_checkpoint(path):
    """The checkpoint to resume at path, or None. A sharded one is replaced by two renames
    (distributed.save_sharded): a crash between them leaves only the previous one, path.old, which is whole."""
    if os.path.exists(path):
        return path
    if os.path.isdir(path + '.old'):
        return path + '.old'
    return None


def plain(value):
    """A tuple as a list: a setting may come back from a file either way."""
    return list(value) if isinstance(value, tuple) else value


def check_resume(ckpt, path, model_args, cfg):
    """A checkpoint continues only the run that wrote it: the same model shape, teacher, aligned blocks (the
    student's and the teacher's) and projector. Anything else is an error, never a silent overwrite."""
    saved = dataclasses.asdict(GPTConfig(**ckpt['model_args']))  # settings newer than the checkpoint: defaults
    if saved != model_args:
        diff = {k: (v, model_args.get(k)) for k, v in saved.items() if model_args.get(k) != v}
        raise ConfigError(f"{path} holds a model of another shape (checkpoint vs config: {diff}); use the "
                          f"checkpoint's settings, or another out_dir")
    for k in ('teacher', 'let_layers', 'let_teacher_layer', 'let_proj'):
        # a checkpoint from before let_teacher_layer aligned with the teacher's final state: -1
        saved = ckpt['config'].get(k, -1) if k == 'let_teacher_layer' else ckpt['config'][k]
        wanted = getattr(cfg, k)
        if plain(saved) != plain(wanted):
            raise ConfigError(f"{path} was trained with {k}={saved!r}, the config says {wanted!r}; keep the "
                              f"checkpoint's value, or use another out_dir")


def load_scaler(scaler, state):
    """The fp16 loss scaler of a resumed run. A run without fp16 saves a disabled scaler's empty state: an fp16
    run that resumes it starts a new loss scale, and a run without fp16 needs none of an fp16 run's. Returns
    what changed, in words, or None."""
    if scaler.is_enabled() and state:
        scaler.load_state_dict(state)
    elif scaler.is_enabled():
        return f"the checkpoint was trained without float16: its loss scale starts anew at {scaler.get_scale():g}"
    elif state:
        return "the checkpoint was trained in float16: its loss scale is dropped, this dtype needs none"
    return None


def _complete(line):
    """A whole JSON line: a killed process can leave half a line at the end of the log."""
    try:
        json.loads(line)
        return line.endswith('\n')
    except ValueError:
        return False


def truncate_log(log_path, iter_num):
    """A resumed run drops what the lost run logged after its checkpoint (iteration iter_num), so the log never
    holds a stretch of steps twice; iter_num=None starts a fresh log."""
    if not os.path.exists(log_path):
        return
    kept = []
    if iter_num is not None:
        with open(log_path) as f:
            kept = [line for line in f if _complete(line) and json.loads(line)['iter'] <= iter_num]
    with open(log_path, 'w') as f:
        f.writelines(kept)


def read_log(out_dir, event='eval'):
    """The records of out_dir/log.jsonl of one event ('eval' or 'train'), one per iteration (the last logged
    wins), sorted by iteration."""
    path = os.path.join(out_dir, 'log.jsonl')
    if not os.path.isfile(path):
        return []
    by_iter = {}
    with open(path) as f:
        for line in f:
            if _complete(line):
                record = json.loads(line)
                if record.get('event') == event:
                    by_iter[record['iter']] = record
    return [by_iter[i] for i in sorted(by_iter)]
