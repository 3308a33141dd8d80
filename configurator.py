"""
The settings of a training run (TrainConfig: every setting, its default and what it means), their checks, and
nanoGPT's way of overriding them:

    python train.py config/override_file.py --batch_size=32

Each argument is a config file (a Python file whose module-level names override the defaults; it may exec() a
sibling config to build on it) or --key=value (the value is read as a Python literal, or taken as a plain
string). Unlike nanoGPT, a setting that does not exist, or a value of the wrong type, is one clear error before
anything runs.
"""

import ast
import dataclasses
import difflib
import importlib.util
import os
import sys
import typing
from dataclasses import dataclass
from typing import Optional


class ConfigError(ValueError):
    """A mistake the user can fix (a setting, a path, a file): the programs print its message alone and exit 2."""


@dataclass
class TrainConfig:
    # defaults: a small byte-level GPT on Shakespeare; config/train_shakespeare_byte.py is the CPU demo's student
    # I/O
    out_dir: str = 'out'
    eval_interval: int = 100
    log_interval: int = 10
    eval_iters: int = 20              # global batches per split per evaluation (the same ones every time)
    eval_only: bool = False
    always_save_checkpoint: bool = True  # save at every checkpoint_interval-th evaluation; False: when the
                                      # val loss improved. The last step is saved either way
    checkpoint_interval: int = 1      # evaluations between the saves of always_save_checkpoint
    init_from: str = 'auto'           # 'auto' (resume if out_dir has a checkpoint) | 'scratch' | 'resume'
    progress: bool = True             # tqdm progress bar on the master process
    # data
    dataset: str = 'shakespeare/byte'  # data/<dataset>/ (or an absolute path) with train.bin, val.bin, meta.json
    gradient_accumulation_steps: int = 1  # global: divided across the processes
    batch_size: int = 32              # sequences per micro-batch per process
    block_size: int = 128
    # model (model.py's GPTConfig): nanoGPT's GPT-2 by default, with nanoGPT's exact GELU; GPT-2's own tanh
    # form ('gelu') computed 2.5x slower on our CPU, about 6% of a step (docs/throughput.md)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 192
    n_kv_head: int = 0                # 0 = n_head
    dropout: float = 0.0
    bias: bool = True
    norm: str = 'layernorm'           # 'layernorm' | 'rmsnorm'
    norm_eps: float = 1e-5
    mlp: str = 'gelu_exact'           # 'gelu_exact' (nanoGPT's) | 'gelu' (GPT-2's tanh form) | 'swiglu' | 'relu'
    mlp_hidden: int = 0
    pos: str = 'learned'              # 'learned' | 'rope'
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    # AdamW
    learning_rate: float = 2e-3
    max_iters: int = 800
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0            # 0 = no clipping
    # learning rate: linear warmup, then cosine decay to min_lr at lr_decay_iters
    decay_lr: bool = True
    warmup_iters: int = 50
    lr_decay_iters: int = 800
    min_lr: float = 2e-4
    # LET (let.py; an empty teacher = plain training)
    teacher: str = ''                 # 'smollm2-135m' | a ckpt.pt (this repo or nanoGPT) | a HF folder or hub name
    let_layers: tuple = (1,)          # k: the student blocks to align, counted from 0 (1 = the second block)
    let_teacher_layer: int = -1       # the teacher's state aligned with: -1 = its final hidden state after the final
                                      # norm (the paper's default); j = the residual stream after its block j (from
                                      # 0, not normed); the paper's "middle" layer: n_layer_teacher // 2 - 1
    let_loss: str = 'cosine'          # 'cosine' (1 - cos, the paper's) | 'mse'
    let_proj: str = 'interp'          # P: 'interp' (the paper's) | 'linear' | 'mlp'
    let_lambda: float = 0.1           # lambda0
    let_stop: int = 250               # S_stop in iterations: lambda is 0 from here on and the teacher is released
    # distillation from the teacher's logits, the paper's baselines (let.py): SALT = kd_stop > 0, RKD = kd_stop 0
    kd_lambda: float = 0.0            # w0, the KD term's weight at step 0; 0 = no distillation
    kd_stop: int = 0                  # SALT's n_KD: the weight is 0 from here on, the teacher released; 0 = never (RKD)
    kd_schedule: str = 'linear'       # until kd_stop: 'step' = w0, then off (SALT as published) | 'linear' = falling
                                      # linearly to 0, like lambda (our earlier runs; the default, so they rerun alike)
    kd_temperature: float = 1.0       # tau: both distributions softened by it, the loss scaled by tau^2
    # experiment tracking, nanoGPT's: the numbers of log.jsonl sent to Weights & Biases (pip install ".[wandb]")
    wandb_log: bool = False
    wandb_project: str = 'let'
    wandb_run_name: str = ''          # '' = out_dir's name; a resumed run continues the same wandb run
    # reliability
    max_nonfinite_steps: int = 10     # this many non-finite steps in a row stop the run
    trust_checkpoint: bool = False    # True: a checkpoint or .pt teacher that holds Python objects beyond tensors
                                      # is unpickled, which can run code stored in it; only for files you trust
    # system
    device: str = 'auto'              # 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
    dtype: str = 'auto'               # 'auto': CUDA native bf16, else fp16 (fsdp: fp32); fp32 off CUDA | 'float32' | ...
    compile: Optional[bool] = None    # None = on for CUDA, off elsewhere
    backend: str = ''                 # torch.distributed backend; '' = nccl on CUDA, gloo on CPU
    data_parallel: str = 'ddp'        # under torchrun: 'ddp' (each GPU holds the whole student) | 'fsdp' (sharded)
    activation_checkpointing: bool = False  # backward recomputes each block: less memory, ~1/3 more compute
    seed: int = 1337


def check_config(cfg):
    """Settings that cannot work, caught before any data is read or compute spent (require: the first that fails
    is raised)."""
    positive = ('batch_size', 'block_size', 'gradient_accumulation_steps', 'eval_interval', 'log_interval',
                'eval_iters', 'max_nonfinite_steps', 'checkpoint_interval')
    checks = [(getattr(cfg, k) > 0, f"{k}={getattr(cfg, k)} must be positive") for k in positive] + [
        (cfg.init_from in ('auto', 'scratch', 'resume'), f"init_from={cfg.init_from!r}: use 'auto', 'scratch' or 'resume'"),
        (cfg.max_iters >= 0, f"max_iters={cfg.max_iters} must be >= 0"),
        (cfg.dtype in ('auto', 'float32', 'bfloat16', 'float16'), f"dtype={cfg.dtype!r}: use auto, float32, bfloat16 or float16"),
        (cfg.block_size > 1, "block_size must be at least 2"),
        (cfg.data_parallel in ('ddp', 'fsdp'), f"data_parallel={cfg.data_parallel!r}: use 'ddp' or 'fsdp'"),
        (cfg.teacher or cfg.kd_lambda == 0, f"kd_lambda={cfg.kd_lambda} distills from a teacher: set teacher"),
        (not cfg.wandb_log or importlib.util.find_spec('wandb'), "wandb_log=True needs wandb: pip install \".[wandb]\""),
    ]
    if cfg.teacher:  # LET's settings (let.py)
        from let import ALIGN_LOSSES, PROJECTORS
        blocks = len(cfg.let_layers) > 0 and all(isinstance(k, int) and not isinstance(k, bool) for k in cfg.let_layers)
        checks += [
            (cfg.let_stop > 0, f"let_stop={cfg.let_stop} must be a positive number of iterations (S_stop)"),
            (cfg.let_lambda >= 0, f"let_lambda={cfg.let_lambda} must be >= 0"),
            (blocks, f"let_layers={cfg.let_layers!r} must be one or more block indices"),
            (blocks and all(0 <= k < cfg.n_layer for k in cfg.let_layers) and len(set(cfg.let_layers)) == len(cfg.let_layers),
             f"let_layers={cfg.let_layers}: blocks are counted from 0, so each must be in 0..{cfg.n_layer - 1} "
             f"(n_layer={cfg.n_layer}), without repeats"),
            (isinstance(cfg.let_teacher_layer, int) and not isinstance(cfg.let_teacher_layer, bool)
             and cfg.let_teacher_layer >= -1, f"let_teacher_layer={cfg.let_teacher_layer!r} must be -1 (the "
             f"teacher's final hidden state) or a teacher block counted from 0"),
            (cfg.let_proj in PROJECTORS, f"let_proj={cfg.let_proj!r}: use one of {PROJECTORS}"),
            (cfg.let_loss in ALIGN_LOSSES, f"let_loss={cfg.let_loss!r}: use one of {ALIGN_LOSSES}"),
        ]
    if cfg.kd_lambda != 0:  # the distillation's (distill.py)
        from distill import KD_SCHEDULES
        checks += [
            (cfg.kd_lambda >= 0, f"kd_lambda={cfg.kd_lambda} must be >= 0"),
            (cfg.kd_stop >= 0, f"kd_stop={cfg.kd_stop} must be >= 0 (0: distill for the whole run, as RKD)"),
            (cfg.kd_schedule in KD_SCHEDULES, f"kd_schedule={cfg.kd_schedule!r}: use one of {KD_SCHEDULES}"),
            (cfg.kd_temperature > 0, f"kd_temperature={cfg.kd_temperature} must be > 0"),
        ]
    require(checks)


def require(checks):
    """checks: (ok, the error) pairs in order; the first that fails is raised as a ConfigError."""
    for ok, error in checks:
        if not ok:
            raise ConfigError(error)


def model_config(cfg, vocab_size):
    """The student's GPTConfig: the model settings of cfg, with the vocabulary of the data."""
    from model import GPTConfig
    names = {f.name for f in dataclasses.fields(GPTConfig)}
    args = {k: v for k, v in dataclasses.asdict(cfg).items() if k in names}
    try:
        return GPTConfig(**args, vocab_size=vocab_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None


# -----------------------------------------------------------------------------
# reading config files and --key=value

def _check_type(name, value, field_type, source):
    """Returns value converted to field_type where that is lossless (int -> float, list -> tuple), else raises."""
    if typing.get_origin(field_type) is typing.Union:  # Optional[bool]: None or a bool
        if value is None:
            return None
        field_type = next(t for t in typing.get_args(field_type) if t is not type(None))
    if field_type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if field_type is tuple:
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        if isinstance(value, (list, tuple)):
            return tuple(value)
    if field_type is int and isinstance(value, bool):
        pass  # True is an int to Python, but not a count
    elif isinstance(value, field_type):
        return value
    raise ConfigError(f"{source}: {name} must be {field_type.__name__}, got {value!r} ({type(value).__name__})")


def _suggest(name, known):
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _where(config_class):
    """'TrainConfig in configurator.py': where a user reads the list of settings."""
    module = sys.modules.get(config_class.__module__)
    filename = os.path.basename(getattr(module, '__file__', '') or '')
    return f"{config_class.__name__} in {filename}" if filename else config_class.__name__


def read_config_file(path):
    """The settings a config file makes: it is run as Python; its names, without __builtins__ and imports."""
    namespace = {'__file__': os.path.abspath(path)}  # lets a config exec() a sibling config
    with open(path) as f:
        exec(compile(f.read(), path, 'exec'), namespace)
    return {name: value for name, value in namespace.items()
            if not name.startswith('_') and not isinstance(value, type(os))}


def load_config(config_class, args=(), overrides=None):
    """Builds config_class (a dataclass) from its defaults, then config files and --key=value in args, in order,
    then the overrides dict (for programs that set some values themselves)."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    values = {}

    def set_value(name, value, source):
        if name not in fields:
            raise ConfigError(f"{source}: unknown setting {name!r}{_suggest(name, fields)}; "
                              f"the settings are listed in {_where(config_class)}")
        values[name] = _check_type(name, value, hints[name], source)

    for arg in args:
        if not arg.startswith('--'):
            if '=' in arg or not arg.endswith('.py'):
                raise ConfigError(f"argument {arg!r}: expected a config file (config/x.py) or --key=value")
            if not os.path.isfile(arg):
                raise ConfigError(f"config file {arg!r} not found")
            for name, value in read_config_file(arg).items():
                set_value(name, value, arg)
        else:
            if '=' not in arg:
                raise ConfigError(f"argument {arg!r}: write --key=value")
            name, text = arg[2:].split('=', 1)
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text  # a plain string, e.g. --out_dir=out-x
            if name in fields and hints[name] is str and not isinstance(value, str):
                value = text  # --teacher=123 or --out_dir=1 are still strings
            set_value(name, value, arg)
    for name, value in (overrides or {}).items():
        set_value(name, value, 'overrides')
    return config_class(**values)


def changes(config_file, base_file):
    """The settings config_file makes differently from base_file (the config it builds on), out_dir aside: how
    a speedup config reuses a training config as one of its runs, without repeating its numbers."""
    config, base = read_config_file(config_file), read_config_file(base_file)
    return {k: v for k, v in config.items() if k != 'out_dir' and (k not in base or base[k] != v)}


def to_args(settings):
    """{name: value} as --key=value arguments that load_config reads back to the same values."""
    return [f"--{k}={v if isinstance(v, str) else repr(v)}" for k, v in settings.items()]


def exit_on_error(main, *args, failed=()):
    """Runs main(*args); a ConfigError ends the program with its message alone and exit status 2, an exception
    of a type in `failed` (a training run that failed, say) with its message and exit status 1."""
    try:
        return main(*args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except failed as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
