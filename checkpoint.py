"""
Checkpoints: one format, one reader, atomic writes, and the checks that make a resumed run continue exactly.

A checkpoint of train.py is a dict (FORMAT below) holding the plain student (never a compiled or data-parallel
wrapper), LET's projectors, the optimizer, the config, the iteration and what the log needs. The data position
and every random stream are functions of (seed, iteration), so the iteration is all a resume needs. The teacher
is never saved, only named (config['teacher']). A student's checkpoint can itself be a teacher (teacher.py).
"""

import dataclasses
import json
import os

import torch

from configurator import ConfigError
from model import GPTConfig

FORMAT = 'let-ckpt-v1'


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


def read_checkpoint(path):
    """The dict in a .pt file of any origin (this repo's, nanoGPT's). weights_only first; pickled Python objects
    (a numpy scalar, a config class) that someone's own checkpoint may hold need the full unpickler, and a file
    given to train on is trusted like any code one runs."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception:
        try:
            return torch.load(path, map_location='cpu', weights_only=False)
        except Exception as e:
            raise ConfigError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it is corrupt or not a "
                              f"checkpoint. Move it away to start over, or point out_dir elsewhere") from None


def load_checkpoint(path):
    """A checkpoint written by train.py, or a ConfigError that says what is wrong with the file."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get('format') != FORMAT:
        raise ConfigError(f"{path} is not a checkpoint written by this train.py (format {FORMAT})")
    return ckpt


def plain(value):
    """A tuple as a list: a setting may come back from a file either way."""
    return list(value) if isinstance(value, tuple) else value


def check_resume(ckpt, path, model_args, cfg):
    """A checkpoint continues only the run that wrote it: the same model shape, teacher, aligned blocks and
    projector. Anything else is an error, never a silent overwrite."""
    saved = dataclasses.asdict(GPTConfig(**ckpt['model_args']))  # settings newer than the checkpoint: defaults
    if saved != model_args:
        diff = {k: (v, model_args.get(k)) for k, v in saved.items() if model_args.get(k) != v}
        raise ConfigError(f"{path} holds a model of another shape (checkpoint vs config: {diff}); use the "
                          f"checkpoint's settings, or another out_dir")
    for k in ('teacher', 'let_layers', 'let_proj'):
        saved, wanted = ckpt['config'][k], getattr(cfg, k)
        if plain(saved) != plain(wanted):
            raise ConfigError(f"{path} was trained with {k}={saved!r}, the config says {wanted!r}; keep the "
                              f"checkpoint's value, or use another out_dir")


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
