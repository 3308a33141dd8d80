"""
A quick, honest check of the LET speedup (arXiv 2602.05393): train a plain baseline, tuned over a grid of
learning rates, and the variants (LET, and the paper's distillation baselines SALT and RKD) on the same data
order, the same student initialisation and the same schedule; then ask how many steps and how much training
time each variant needs to reach the tuned baseline's final validation loss.

$ python speedup.py config/speedup_shakespeare.py                      # byte-level Shakespeare, CPU
$ python speedup.py config/speedup_shakespeare.py --seeds="(1, 2)"     # other seeds
$ python speedup.py config/speedup_smollm2.py                          # SmolLM2-135M teacher, one GPU

Every TrainConfig setting (configurator.py) is valid here and shared by all student runs; speedup.py adds:
  variants       {name: {TrainConfig overrides}}, each applied on top of the shared settings for one run
  seeds          one baseline and one run per variant for each seed (data order and student init follow it)
  lr_grid        learning rates tried for the baseline (min_lr keeps its ratio to learning_rate); the one with
                 the lowest mean final val loss over the seeds sets the target, and the variants run at it.
                 Empty: learning_rate alone, and the report says the baseline is untuned
  tune_variants  True: every variant also runs over lr_grid and is reported at its own best
  teacher_train  overrides that train the teacher first when `teacher` is a ckpt.pt that does not exist yet
  jobs           runs trained at once, each with cpu_count // jobs threads (output in out_dir/train.out);
                 0: one per CPU core, one thread each (then the results do not depend on the core count).
                 Runs on CUDA go one per GPU, each seeing its own (CUDA_VISIBLE_DEVICES): 0 or more than
                 the GPUs there are means one on every GPU
  speedup_dir    where runs, report.md and plots go: speedup_dir/seed<seed>/<run>[-lr<lr>]/
  fresh          True: train every student run from scratch (the teacher is kept; delete its folder to retrain)

Reuse: a run folder whose checkpoint was written with the same settings is not trained again: finished, its
log is read as it is; unfinished (a crash, Ctrl-C), train.py resumes it exactly (init_from='auto'). A folder
with other settings is cleared and trained anew. The same goes for a self-trained teacher: one with the
settings of teacher_train is reused or finished; any other existing checkpoint is a given teacher, used as is.

Numbers, per seed, with target = the (tuned) baseline's final val loss:
  steps to target   first evaluation crossing of the target, linearly interpolated between the two
                    evaluations around it (the baseline's own crossing is its last step unless it dipped lower
                    earlier: the same definition for every run)
  step speedup      baseline steps / variant steps
  wall-clock        baseline train_time / variant train_time at the crossing (train.py's train_time: seconds
                    inside training steps, the teacher's forward included, evaluation, saving and torch.compile's
                    compilation excluded: train.py builds its graphs before its clock starts);
                    for a variant that uses a teacher trained here, also with its training time charged
  gap at x%         variant val loss - baseline val loss at x% of the baseline's steps (interpolated)
A variant that never reaches the target is "not reached" with its final gap; no speedup is extrapolated.
"""

import dataclasses
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch

from components.checkpoint import load_checkpoint, plain, read_log
from configurator import ConfigError, TrainConfig, check_config, exit_on_error, load_config, model_config, to_args
from data.common import check_dataset, resolve_data_dir
from model import GPT, padded_vocab
from components.system import describe_machine, resolve_device
from teacher import check_teacher, load_teacher

REPO_DIR = os.path.dirname(os.path.abspath(__file__))

FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # where the val-loss gap is reported, as fractions of the baseline's steps


# -----------------------------------------------------------------------------
# report arithmetic: small pure functions on curves, lists of (step, value) sorted by step

def interp_at(curve, x):
    """The curve's value at x, linear between the two points around it; None outside the curve."""
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    if curve and x == curve[0][0]:
        return curve[0][1]  # a one-point curve
    return None


def steps_to_reach(curve, target):
    """First x where the curve reaches target or below, linear between the two points around the crossing;
    None if it never does. Evaluations are sparse: the crossing lies between them, not on one."""
    for i, (x, y) in enumerate(curve):
        if y <= target:
            if i == 0:
                return x
            x0, y0 = curve[i - 1]
            return x0 + (x - x0) * (y0 - target) / (y0 - y)
    return None


def aggregate(values):
    """Statistics over seeds of one number; None entries (not reached) are counted, not averaged.
    std is the sample standard deviation (n - 1), 0 for a single value."""
    got = [v for v in values if v is not None]
    out = {'n': len(values), 'missing': len(values) - len(got), 'mean': None, 'std': None, 'min': None, 'max': None}
    if got:
        mean = sum(got) / len(got)
        var = sum((v - mean) ** 2 for v in got) / (len(got) - 1) if len(got) > 1 else 0.0
        out.update(mean=mean, std=math.sqrt(var), min=min(got), max=max(got))
    return out


def step_time(time_curve, start, end):
    """Mean seconds per training step between steps start and end of a (step, train_time) curve, or None."""
    t0, t1 = interp_at(time_curve, start), interp_at(time_curve, end)
    return (t1 - t0) / (end - start) if t0 is not None and t1 is not None and end > start else None


def ratio(a, b):
    return a / b if a is not None and b else None


def compare(baseline, variant, teacher_time=None, teacher_stop=None):
    """The numbers of one seed. baseline, variant: eval records ({'iter', 'val_loss', 'train_time'}, sorted by
    iter); teacher_time: seconds spent training the teacher, or None when unknown; teacher_stop: the step where
    the variant's teacher stops running (teacher_steps), or None when it has no teacher."""
    base_loss = [(r['iter'], r['val_loss']) for r in baseline]
    base_time = [(r['iter'], r['train_time']) for r in baseline]
    var_loss = [(r['iter'], r['val_loss']) for r in variant]
    var_time = [(r['iter'], r['train_time']) for r in variant]
    target = base_loss[-1][1]
    base_steps = steps_to_reach(base_loss, target)
    out = {'target': target, 'base_steps': base_steps, 'base_time': interp_at(base_time, base_steps),
           'base_final': target, 'final_val': var_loss[-1][1], 'final_gap': var_loss[-1][1] - target,
           'steps': steps_to_reach(var_loss, target)}
    out['time'] = interp_at(var_time, out['steps']) if out['steps'] is not None else None
    reached = out['steps'] is not None
    # a variant that reaches the target at step 0 would divide by zero: that is not a speedup anyone can use
    out['step_speedup'] = base_steps / out['steps'] if reached and out['steps'] > 0 else None
    out['time_speedup'] = out['base_time'] / out['time'] if reached and out['time'] > 0 else None
    out['time_speedup_with_teacher'] = (out['base_time'] / (out['time'] + teacher_time)
                                        if reached and teacher_time is not None else None)
    # the teacher's cost: step time while it runs, and after S_stop, relative to the baseline's same steps. After
    # S_stop both runs do identical work, so a ratio far from 1 there means the machine's load changed and the
    # wall-clock numbers are noise
    last_step = base_loss[-1][0]
    if teacher_stop:
        stop = min(teacher_stop, last_step, var_loss[-1][0])
        out['teacher_step_ratio'] = ratio(step_time(var_time, 0, stop), step_time(base_time, 0, stop))
        # from the first evaluation after S_stop: the step at S_stop also releases the teacher (a one-off cost)
        after = next((x for x, _ in var_loss if x > stop), None)
        end = min(last_step, var_loss[-1][0])
        out['plain_step_ratio'] = (ratio(step_time(var_time, after, end), step_time(base_time, after, end))
                                   if after is not None else None)
    else:
        out['teacher_step_ratio'] = out['plain_step_ratio'] = None
    for f in FRACTIONS:
        v, b = interp_at(var_loss, f * last_step), interp_at(base_loss, f * last_step)
        out[f'gap_{f:g}'] = v - b if v is not None and b is not None else None
    return out


# -----------------------------------------------------------------------------
# configuration

@dataclass
class SpeedupConfig(TrainConfig):
    variants: dict = field(default_factory=lambda: {'let': {}})  # name -> TrainConfig overrides of one run
    seeds: tuple = (1337,)            # student seeds; `seed` itself only seeds the teacher's training
    teacher_train: dict = field(default_factory=dict)  # overrides that train a missing ckpt.pt teacher
    lr_grid: tuple = ()               # learning rates for the baseline; the best one sets the target (empty:
                                      # learning_rate alone, and the report says the baseline is untuned)
    tune_variants: bool = False       # True: every variant runs over lr_grid too and is reported at its best
    jobs: int = 1                     # runs trained at once, cpu_count // jobs threads each; 0: one per core/GPU
    speedup_dir: str = 'out-speedup'
    fresh: bool = False               # True: every student run starts from scratch


# What makes two runs comparable step for step: a variant cannot change these (it would see another data
# stream or batch, or be scored on another validation set)...
MATCHED = ('dataset', 'batch_size', 'block_size', 'gradient_accumulation_steps', 'eval_iters')
# ...nor these, which speedup.py sets for each run
PLACED = ('seed', 'out_dir', 'init_from')
# settings that do not change what a run computes: a checkpoint written with other values is still reusable
NOT_RESULTS = ('out_dir', 'init_from', 'progress', 'log_interval', 'eval_only', 'always_save_checkpoint',
               'checkpoint_interval')


def shared_settings(cfg):
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k in train_fields}


def checked_train_config(overrides, what):
    try:
        run_cfg = load_config(TrainConfig, [], overrides)
        check_config(run_cfg)
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}") from None
    return run_cfg


def run_config(cfg, seed, name, overrides):
    """The TrainConfig of one student run: shared settings, then the variant's overrides, then its place."""
    bad = sorted(set(overrides) & set(MATCHED + PLACED))
    if bad:
        raise ConfigError(f"variant {name!r} sets {bad}: runs must share {MATCHED} to be compared step by step, "
                          f"and speedup.py sets {PLACED} (seeds go in `seeds`)")
    settings = dict(shared_settings(cfg), **overrides)
    settings.update(seed=seed, out_dir=os.path.join(cfg.speedup_dir, f'seed{seed}', name), init_from='auto',
                    always_save_checkpoint=True)  # resume: every checkpoint_interval-th evaluation; reuse: the last
    return checked_train_config(settings, f"variant {name!r}" if name != 'baseline' else 'baseline')


def teacher_config(cfg):
    """The TrainConfig that trains the teacher: the shared settings, teacher_train on top, in the checkpoint's
    folder, on the students' dataset (LET aligns token by token: one tokenizer for both)."""
    if os.path.basename(cfg.teacher) != 'ckpt.pt':
        raise ConfigError(f"teacher={cfg.teacher!r}: a teacher to train must be named .../ckpt.pt (train.py writes "
                          f"out_dir/ckpt.pt)")
    bad = sorted(set(cfg.teacher_train) & {'dataset', 'out_dir', 'teacher'})
    if bad:
        raise ConfigError(f"teacher_train sets {bad}: the teacher trains on the students' dataset, into the folder "
                          f"of teacher={cfg.teacher!r}, without a teacher of its own")
    settings = dict(shared_settings(cfg), **cfg.teacher_train)
    settings.update(teacher='', out_dir=os.path.dirname(cfg.teacher) or '.', init_from='auto')
    tcfg = checked_train_config(settings, 'teacher_train')
    if tcfg.block_size < cfg.block_size:
        raise ConfigError(f"teacher_train block_size={tcfg.block_size} is shorter than the students' "
                          f"block_size={cfg.block_size}: the teacher must read whole student sequences")
    return tcfg


def teacher_ckpt(cfg):
    """The checkpoint file `teacher` names: itself (a .pt), or a folder's ckpt.pt."""
    return cfg.teacher if cfg.teacher.endswith('.pt') else os.path.join(cfg.teacher, 'ckpt.pt')


def trains_teacher(cfg):
    """True when `teacher` names a checkpoint to train (missing) or one that teacher_train may have trained."""
    exists = os.path.isfile(cfg.teacher)
    return bool(cfg.teacher_train) and cfg.teacher.endswith('.pt') and (
        not exists or os.path.basename(cfg.teacher) == 'ckpt.pt')


# -----------------------------------------------------------------------------
# data and runs

def ensure_dataset(dataset):
    """Prepares data/shakespeare/<tokenizer> when missing; any other missing dataset is an error that names its
    prepare script (the Pile, say, is too large to fetch behind the user's back)."""
    data_dir = resolve_data_dir(dataset)
    if os.path.isfile(os.path.join(data_dir, 'meta.json')):
        return
    parts = dataset.split('/')
    if not os.path.isabs(dataset) and len(parts) == 2 and parts[0] == 'shakespeare':
        from data.shakespeare.prepare import prepare
        from data.tokenizer import TOKENIZERS
        from data.common import DataError
        if parts[1] in TOKENIZERS:
            print(f"preparing dataset {dataset} ...")
            try:
                prepare(tokenizer=parts[1])
            except DataError as e:
                raise ConfigError(f"dataset {dataset!r} could not be prepared: {e}") from None
            return
    script = os.path.join('data', parts[0], 'prepare.py') if not os.path.isabs(dataset) else "its prepare.py"
    raise ConfigError(f"dataset {dataset!r} not found ({data_dir}/meta.json is missing); prepare it first with "
                      f"{script}")


def saved_state(run_cfg):
    """(checkpoint config, iteration) of run_cfg.out_dir/ckpt.pt, or None when there is no readable one of ours."""
    path = os.path.join(run_cfg.out_dir, 'ckpt.pt')
    if not os.path.isfile(path):
        return None
    try:
        ckpt = load_checkpoint(path)
    except ConfigError:
        return None
    return ckpt['config'], ckpt['iter_num']


def same_settings(saved_config, run_cfg):
    mine = dataclasses.asdict(run_cfg)
    keys = (set(saved_config) | set(mine)) - set(NOT_RESULTS)
    return all(plain(saved_config.get(k)) == plain(mine.get(k)) for k in keys)


class RunFailed(RuntimeError):
    pass


def plan(run_cfg, fresh=False):
    """What a run folder needs (see the top of the file): 'reused' (finished earlier with the same settings),
    'resumed' (unfinished, same settings) or 'trained' (anything else: the folder's old state is removed)."""
    state = None if fresh else saved_state(run_cfg)
    if state and same_settings(state[0], run_cfg):
        evals = read_log(run_cfg.out_dir)
        finished = state[1] >= run_cfg.max_iters and evals and evals[-1]['iter'] == run_cfg.max_iters
        return 'reused' if finished else 'resumed'
    for name in ('ckpt.pt', 'log.jsonl'):  # another run's state: this folder belongs to speedup.py
        path = os.path.join(run_cfg.out_dir, name)
        if os.path.exists(path):
            os.remove(path)
    return 'trained'


def job_slots(jobs, n_gpus, n_cpus):
    """How many runs train at once. On GPUs one per GPU (jobs=0: every GPU): more would share one GPU's memory
    and run out of it while the others idle. On CPUs jobs (0: one per core)."""
    if n_gpus:
        return min(jobs or n_gpus, n_gpus)
    return jobs or n_cpus or 1


def visible_gpus(n_gpus, parent_visible=None):
    """The CUDA_VISIBLE_DEVICES entry of each GPU this process sees: its i-th GPU is the i-th entry of its own
    CUDA_VISIBLE_DEVICES where that is set (a run must stay inside the GPUs it was given), else i."""
    if parent_visible:
        return [entry.strip() for entry in parent_visible.split(',')][:n_gpus]
    return [str(i) for i in range(n_gpus)]


def slot_env(slot, at_once, n_cpus, gpus=None):
    """What the process in `slot` (0 .. at_once - 1) adds to its environment: its share of the cores when several
    run at once (oversubscribed threads only wait on each other), and its own GPU, gpus[slot], where the runs
    spread over GPUs (it sees that one alone, as cuda:0)."""
    env = {'OMP_NUM_THREADS': str(max(1, (n_cpus or 1) // at_once))} if at_once > 1 else {}
    if gpus:
        env['CUDA_VISIBLE_DEVICES'] = gpus[slot]
    return env


def run_gpus(device_settings):
    """(how many GPUs runs on these device settings fill, one run each; their CUDA_VISIBLE_DEVICES entries, or
    None). 'cuda' and 'auto' on a CUDA machine: every visible GPU. Runs pinned to 'cuda:N' share that one GPU and
    keep seeing all of them (hiding the others would leave no cuda:N); runs off CUDA: none."""
    devices = {resolve_device(d) for d in device_settings}
    if not any(d.startswith('cuda') for d in devices):
        return 0, None
    if any(d.startswith('cuda:') for d in devices):
        return 1, None
    n_gpus = torch.cuda.device_count()
    return n_gpus, visible_gpus(n_gpus, os.environ.get('CUDA_VISIBLE_DEVICES'))


def run_all(run_cfgs, jobs=1, fresh=False):
    """Trains the runs {key: TrainConfig} that need it, `jobs` train.py processes at a time (job_slots(): on
    GPUs at most one per GPU, each process on its own), and returns {key: (eval records, how)}. One job streams
    its output here; several write theirs to out_dir/train.out."""
    hows = {key: plan(run_cfg, fresh) for key, run_cfg in run_cfgs.items()}
    todo = [key for key, how in hows.items() if how != 'reused']
    for key, how in hows.items():
        if how == 'reused':
            print(f"{run_cfgs[key].out_dir}: finished earlier with the same settings, reused")
    n_gpus, gpus = run_gpus([run_cfgs[key].device for key in todo])
    at_once = job_slots(jobs, n_gpus, os.cpu_count())
    running = {}  # key -> (process, command, output file, slot)
    while todo or running:
        while todo and len(running) < at_once:
            key = todo.pop(0)
            run_cfg = run_cfgs[key]
            slot = min(set(range(at_once)) - {slot for *_, slot in running.values()})  # a GPU no other run holds
            settings = dataclasses.asdict(run_cfg)
            if at_once > 1:
                settings['progress'] = False  # a progress bar in a file is noise
            cmd = [sys.executable, os.path.join(REPO_DIR, 'train.py'), *to_args(settings)]
            env = slot_env(slot, at_once, os.cpu_count(), gpus)
            gpu = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if 'CUDA_VISIBLE_DEVICES' in env else ''
            print(f"\n=== {hows[key]}: {run_cfg.out_dir}{gpu}", flush=True)
            out = None
            if at_once > 1:
                os.makedirs(run_cfg.out_dir, exist_ok=True)
                out = open(os.path.join(run_cfg.out_dir, 'train.out'), 'w')
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                                    env=dict(os.environ, **env) if env else None)
            running[key] = (proc, cmd, out, slot)
        time.sleep(0.1)
        for key in [key for key, (proc, *_) in running.items() if proc.poll() is not None]:
            proc, cmd, out, _ = running.pop(key)
            if out:
                out.close()
            if proc.returncode != 0:
                for other, *_ in running.values():
                    other.terminate()
                where = f" (its output: {out.name})" if out else " (its error is above)"
                raise RunFailed(f"a run failed{where}: {' '.join(map(quote, cmd))}")
            if at_once > 1:
                print(f"=== done: {run_cfgs[key].out_dir}", flush=True)
    return {key: (read_log(run_cfg.out_dir), hows[key]) for key, run_cfg in run_cfgs.items()}


def uses_teacher(run_cfg):
    return bool(run_cfg.teacher) and (run_cfg.let_lambda > 0 or run_cfg.kd_lambda > 0)


def teacher_steps(run_cfg):
    """The steps during which the run's teacher runs (S_stop, SALT's stop, all of them for RKD), or None."""
    if not uses_teacher(run_cfg):
        return None
    let_steps = run_cfg.let_stop if run_cfg.let_lambda > 0 else 0
    kd_steps = (run_cfg.kd_stop or run_cfg.max_iters) if run_cfg.kd_lambda > 0 else 0
    return min(run_cfg.max_iters, max(let_steps, kd_steps))


def teacher_plan(cfg):
    """The teacher's training run when speedup.py trains (or finishes) it, else None; and how it came to be.
    A missing teacher without teacher_train is an error now, before any compute."""
    path = teacher_ckpt(cfg)
    if trains_teacher(cfg):
        tcfg = teacher_config(cfg)
        state = saved_state(tcfg) if os.path.isfile(path) else None
        if not os.path.isfile(path):
            return tcfg, 'trained here'
        if state and same_settings(state[0], tcfg):
            return tcfg, 'trained with teacher_train by an earlier run'
        print(f"teacher {cfg.teacher} exists but was not trained with teacher_train: used as is (move "
              f"{os.path.dirname(path) or '.'} away to train it with teacher_train)")
    elif cfg.teacher.endswith('.pt') and not os.path.isfile(path):
        raise ConfigError(f"teacher {cfg.teacher} does not exist and teacher_train is empty: set teacher_train "
                          f"(e.g. teacher_train = dict(n_layer=3, n_embd=128, max_iters=3000)) to train it here")
    return None, 'given'


def teacher_info(cfg, how):
    """Loads the teacher once to check it against the data (a wrong tokenizer or a too-short context is an
    error before the students train), and returns what the report says about it."""
    info = {'spec': cfg.teacher, 'how': how, 'train_time': None, 'val_loss': None, 'iters': None}
    try:
        t = load_teacher(cfg.teacher)
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"teacher {cfg.teacher!r} cannot be loaded: {e}") from None
    check_teacher(t, check_dataset(resolve_data_dir(cfg.dataset)), cfg.block_size)
    c = t.model.config
    info['shape'] = f"{c.n_layer} blocks x {c.n_embd} ({c.n_head} heads), {t.n_params / 1e6:.2f}M parameters"
    t.release()
    path = teacher_ckpt(cfg)
    if os.path.isfile(path) and os.path.basename(path) == 'ckpt.pt':
        info['iters'] = load_checkpoint(path).get('iter_num')
        evals = read_log(os.path.dirname(path) or '.')
        if evals:
            # its training time can be charged to the variants only when its own log says what it was
            info['train_time'], info['val_loss'] = evals[-1]['train_time'], evals[-1]['val_loss']
            if info['how'] == 'given':
                info['how'] = 'given, with its training log'
    return info


# -----------------------------------------------------------------------------
# report

SPEEDUP_COLUMNS = [  # (header, key of compare()'s result, format, what a missing value means)
    ('steps to target', 'steps', '{:.0f}', 'not reached'),
    ('step speedup', 'step_speedup', '{:.2f}x', 'not reached'),
    ('train time to target (s)', 'time', '{:.1f}', 'not reached'),
    ('wall-clock speedup', 'time_speedup', '{:.2f}x', 'not reached'),
    ('wall-clock incl. teacher training', 'time_speedup_with_teacher', '{:.2f}x', 'not reached'),
    ('final val loss', 'final_val', '{:.4f}', 'n/a'),
]
GAP_COLUMNS = [(f'val gap @{f:.0%}', f'gap_{f:g}', '{:+.4f}', 'n/a') for f in FRACTIONS] + [
    ('step time before S_stop', 'teacher_step_ratio', '{:.2f}x', 'n/a'),
    ('step time after S_stop', 'plain_step_ratio', '{:.2f}x', 'n/a'),
]


def fmt_stat(values, fmt, missing):
    """One seed: the value. Several: mean ± std [min..max], and in how many seeds it is missing."""
    s = aggregate(values)
    if s['mean'] is None:
        return missing
    text = fmt.format(s['mean'])
    if s['n'] > 1 and s['max'] > s['min']:
        num = fmt.rstrip('x')  # the spread without the unit
        text += f" ± {num.replace('+', '').format(s['std'])} [{num.format(s['min'])}..{num.format(s['max'])}]"
    if s['missing']:
        text += f" ({missing} in {s['missing']}/{s['n']} seeds)"
    return text


def table(header, rows):
    """A markdown table padded into aligned columns, so the same text reads well in a terminal."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: '| ' + ' | '.join(str(c).ljust(w) for c, w in zip(cells, widths)) + ' |'
    return '\n'.join([line(header), '|' + '|'.join('-' * (w + 2) for w in widths) + '|'] + [line(r) for r in rows])


def speedup_table(results, charged):
    """results: {variant: [compare() of each seed]}. One row per variant, after the baseline's own."""
    columns = [c for c in SPEEDUP_COLUMNS if charged or c[1] != 'time_speedup_with_teacher']
    first = next(iter(results.values()))
    base = {'steps': [r['base_steps'] for r in first], 'step_speedup': [1.0] * len(first),
            'time': [r['base_time'] for r in first], 'time_speedup': [1.0] * len(first),
            'time_speedup_with_teacher': [None] * len(first), 'final_val': [r['base_final'] for r in first]}
    rows = [['baseline'] + [fmt_stat(base[key], fmt, 'n/a' if key == 'time_speedup_with_teacher' else missing)
                            for _, key, fmt, missing in columns]]
    for name, per_seed in results.items():
        rows.append([name] + [fmt_stat([r[key] for r in per_seed], fmt, missing) for _, key, fmt, missing in columns])
    return table(['run'] + [c[0] for c in columns], rows)


def gap_table(results):
    """Val-loss gap to the baseline along training, and the teacher's cost in step time, one row per variant."""
    rows = [[name] + [fmt_stat([r[key] for r in per_seed], fmt, missing) for _, key, fmt, missing in GAP_COLUMNS]
            for name, per_seed in results.items()]
    return table(['variant vs baseline'] + [c[0] for c in GAP_COLUMNS], rows)


def seed_table(results, seeds):
    header = ['variant', 'seed', 'target', 'steps (baseline)', 'steps', 'step speedup', 'time (baseline)', 'time',
              'wall-clock speedup', 'final gap']
    f = lambda v, fmt, missing='not reached': missing if v is None else fmt.format(v)
    rows = [[name, seed, f(r['target'], '{:.4f}'), f(r['base_steps'], '{:.0f}'), f(r['steps'], '{:.0f}'),
             f(r['step_speedup'], '{:.2f}x'), f(r['base_time'], '{:.1f}s'), f(r['time'], '{:.1f}s'),
             f(r['time_speedup'], '{:.2f}x'), f(r['final_gap'], '{:+.4f}')]
            for name, per_seed in results.items() for seed, r in zip(seeds, per_seed)]
    return table(header, rows)


def headline(name, per_seed):
    """One sentence per variant: what a reader wants to know first."""
    steps = aggregate([r['steps'] for r in per_seed])
    n = steps['n']
    if steps['missing'] == n:
        gap = aggregate([r['final_gap'] for r in per_seed])['mean']
        return (f"{name}: does not reach the baseline's final val loss; it ends {gap:+.4f} from it"
                f"{' (mean over seeds)' if n > 1 else ''}")
    mean = lambda key: aggregate([r[key] for r in per_seed])['mean']
    text = (f"{name}: reaches the baseline's final val loss in {steps['mean']:.0f} steps instead of "
            f"{mean('base_steps'):.0f}{' (means over the seeds that reach it)' if n > 1 else ''}: step speedup "
            f"{mean('step_speedup'):.2f}x, wall-clock speedup {mean('time_speedup'):.2f}x")
    if mean('time_speedup_with_teacher') is not None:
        text += f" ({mean('time_speedup_with_teacher'):.2f}x counting the teacher's own training)"
    if steps['missing']:
        text += f"; not reached in {steps['missing']} of {n} seeds"
    return text


def plot_curves(runs, x_key, path, title, targets, s_stops):
    """Val loss vs x_key ('iter' or 'train_time'): each run's mean over seeds, with a min-max band.
    runs: {name: [eval records of each seed]}; the y-axis is zoomed to where the runs differ."""
    import matplotlib
    matplotlib.use('Agg')  # no display needed
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    tops, bottoms = [], []
    for i, (name, per_seed) in enumerate(runs.items()):
        steps = [r['iter'] for r in per_seed[0]]
        losses = [[interp_at([(r['iter'], r['val_loss']) for r in s], x) for x in steps] for s in per_seed]
        xs_all = [[interp_at([(r['iter'], r[x_key]) for r in s], x) for x in steps] for s in per_seed]
        keep = [j for j in range(len(steps)) if all(l[j] is not None for l in losses + xs_all)]
        mean = [sum(l[j] for l in losses) / len(losses) for j in keep]
        lo, hi = [min(l[j] for l in losses) for j in keep], [max(l[j] for l in losses) for j in keep]
        xs = [sum(x[j] for x in xs_all) / len(xs_all) for j in keep]  # x of a time plot: mean over seeds
        color = f'C{i}'
        ax.plot(xs, mean, color=color, label=name + (f' ({len(per_seed)} seeds)' if len(per_seed) > 1 else ''))
        if len(per_seed) > 1:
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
        if x_key == 'iter' and s_stops.get(name):
            ax.axvline(s_stops[name], color=color, linestyle=':', linewidth=1)  # the teacher stops here
        tenth = interp_at(list(zip([steps[j] for j in keep], mean)), 0.1 * steps[-1])
        tops.append(tenth if tenth is not None else mean[0])
        bottoms.append(min(lo))
    ax.axhline(sum(targets) / len(targets), color='gray', linestyle='--', linewidth=1, label="baseline's final val loss")
    top, bottom = max(tops), min(bottoms)
    margin = 0.05 * (top - bottom) if top > bottom else 0.05
    ax.set_ylim(bottom - margin, top + margin)  # from the loss at ~10% of training down to the best one
    ax.set_xlabel('training steps' if x_key == 'iter' else 'training time, s (train_time: teacher forward included)')
    ax.set_ylabel('validation loss')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def student_params(run_cfg):
    """Parameter count of the student, built on the meta device: no memory, no time."""
    meta = check_dataset(resolve_data_dir(run_cfg.dataset))
    with torch.device('meta'):
        model = GPT(model_config(run_cfg, padded_vocab(meta['vocab_size'])))
    return model.get_num_params()


def machine(device_setting):
    """What the timings were measured on: the system, CPU model and count, torch, and the device the runs used."""
    return f"{platform.system()} {platform.release()}, {describe_machine(resolve_device(device_setting))}"


def let_settings(run_cfg):
    """The run's use of a teacher, in words: LET's settings, the distillation's, or none."""
    parts = [f"learning rate {run_cfg.learning_rate:g}"]
    if uses_teacher(run_cfg):
        parts.append(f"teacher {run_cfg.teacher}")
    if uses_teacher(run_cfg) and run_cfg.let_lambda > 0:
        parts.append(f"LET: lambda0 {run_cfg.let_lambda:g}, S_stop {run_cfg.let_stop}, block(s) "
                     f"k={list(run_cfg.let_layers)} (from 0), projector {run_cfg.let_proj}, loss {run_cfg.let_loss}")
    if uses_teacher(run_cfg) and run_cfg.kd_lambda > 0:
        kind = f"SALT-style, weight falling to 0 at step {run_cfg.kd_stop}" if run_cfg.kd_stop else "RKD, constant"
        parts.append(f"KD ({kind}): w0 {run_cfg.kd_lambda:g}, temperature {run_cfg.kd_temperature:g}")
    if not uses_teacher(run_cfg):
        parts.append("no teacher (plain training)")
    return '; '.join(parts)


def grid_table(grids, best_lr, seeds):
    """Final val loss at each learning rate tried, per seed and mean; the one chosen is marked."""
    rows = []
    for name, by_lr in grids.items():
        for lr, losses in by_lr.items():
            mark = ' (chosen)' if len(by_lr) > 1 and lr == best_lr[name] else ''
            rows.append([name, f"{lr:g}{mark}", *[f"{v:.4f}" for v in losses], f"{sum(losses) / len(losses):.4f}"])
    return table(['run', 'learning rate'] + [f'final val, seed {s}' for s in seeds] + ['mean'], rows)


def target_line(cfg, best_lr, grids):
    """Which baseline the speedups are measured against, in one sentence: tuned or not."""
    lrs = list(grids['baseline'])
    if len(lrs) > 1:
        return (f"Target: the final val loss of the baseline at learning rate {best_lr['baseline']:g}, the best "
                f"of {', '.join(f'{lr:g}' for lr in lrs)} (lowest mean final val loss over {len(cfg.seeds)} "
                f"seed(s)); the variants ran at "
                + ("their own best learning rate of the same grid." if cfg.tune_variants else
                   "the same learning rate."))
    return (f"Target: the final val loss of an UNTUNED baseline (learning rate {lrs[0]:g} only): speedups against "
            f"it may overstate the gain; set lr_grid to tune it.")


def write_report(cfg, command, configs, results, teacher, hows, grids, total_time):
    """Console table, report.md and the two plots in speedup_dir. configs and hows: {(seed, name): ...} of the
    runs compared (each at its chosen learning rate); grids: {name: {learning rate: final val loss per seed}}."""
    seeds = list(cfg.seeds)
    base_cfg = configs[(seeds[0], 'baseline')]
    charged = any(r['time_speedup_with_teacher'] is not None for per_seed in results.values() for r in per_seed)
    best_lr = {name: configs[(seeds[0], name)].learning_rate for name in grids}  # the learning rate each ran at
    runs = {'baseline': [hows[(s, 'baseline')][0] for s in seeds]}
    runs.update({name: [hows[(s, name)][0] for s in seeds] for name in cfg.variants})
    targets = [r['target'] for r in next(iter(results.values()))]
    stops = {name: teacher_steps(configs[(seeds[0], name)]) for name in cfg.variants}
    plot_curves(runs, 'iter', os.path.join(cfg.speedup_dir, 'val_loss_vs_steps.png'),
                'validation loss vs steps (dotted: the teacher stops)', targets, stops)
    plot_curves(runs, 'train_time', os.path.join(cfg.speedup_dir, 'val_loss_vs_time.png'),
                'validation loss vs training time', targets, stops)

    target = target_line(cfg, best_lr, grids)
    summary = speedup_table(results, charged) + '\n\n' + gap_table(results)
    lines = [headline(name, per_seed) for name, per_seed in results.items()]
    lr_table = grid_table(grids, best_lr, seeds)
    print('\n' + lr_table + '\n\n' + summary + '\n\n' + target + '\n' + '\n'.join(lines))

    tokens_per_iter = base_cfg.batch_size * base_cfg.gradient_accumulation_steps * base_cfg.block_size
    arch = (f"{base_cfg.n_layer} blocks x {base_cfg.n_embd} ({base_cfg.n_head} heads), {base_cfg.norm}, "
            f"{base_cfg.mlp}, {base_cfg.pos} positions, bias {base_cfg.bias}")
    teacher_line = f"`{teacher['spec']}`, {teacher['how']}" + (f": {teacher['shape']}" if teacher['shape'] else '')
    if teacher['train_time'] is not None:
        teacher_line += (f", {teacher['iters']} steps, training time {teacher['train_time']:.1f} s (its log), "
                         f"final val loss {teacher['val_loss']:.4f}")
    reused = [f"seed{s}/{n}" for (s, n), (_, how) in hows.items() if how != 'trained']
    md = [
        '# LET speedup report', '',
        f"Made by `{command}` on {time.strftime('%Y-%m-%d %H:%M')} in {total_time / 60:.1f} min"
        + (f", {cfg.jobs} runs at a time (wall-clock figures include their sharing of the machine)"
           if cfg.jobs > 1 else '') + ".", '',
        f"Machine: {machine(base_cfg.device)}, dtype setting `{base_cfg.dtype}`.", '',
        '## Settings', '',
        f"- data: `{base_cfg.dataset}`, {tokens_per_iter:,} tokens per step ({base_cfg.batch_size} x "
        f"{base_cfg.gradient_accumulation_steps} x {base_cfg.block_size}), {base_cfg.max_iters} steps = "
        f"{tokens_per_iter * base_cfg.max_iters:,} tokens per run; evaluation every {base_cfg.eval_interval} steps "
        f"on {base_cfg.eval_iters} batches",
        f"- student: {arch}, {student_params(base_cfg) / 1e6:.2f}M parameters; warmup {base_cfg.warmup_iters}, "
        f"cosine to min_lr = {base_cfg.min_lr / base_cfg.learning_rate:g} x the learning rate at "
        f"{base_cfg.lr_decay_iters}",
        f"- teacher: {teacher_line}",
        f"- seeds: {', '.join(map(str, seeds))} (each: data order and student init; the same for every run)",
        '- runs:',
    ]
    md += [f"  - baseline: {let_settings(base_cfg)}"]
    md += [f"  - {name}: {let_settings(configs[(seeds[0], name)])} (overrides `{overrides}`)"
           for name, overrides in cfg.variants.items()]
    if reused:
        md += [f"- reused from an earlier invocation (same settings): {', '.join(reused)}"]
    md += ['', '## Results', '', target, '', *[f"- {line}" for line in lines], '', summary, '',
           "Steps and times at the target are the first crossing, linearly interpolated between the two evaluations "
           "around it. Wall-clock uses train_time (training steps only, the teacher's forward included, evaluation "
           "and saving excluded, and compilation: a compiled run builds its graphs before its clock starts, and "
           "S_stop changes no graph)"
           + ("; 'incl. teacher training' also charges the teacher's own training time to each variant that uses "
              "it, as if it were trained for this one student" if charged else '') + ". Val gap: variant minus "
           "baseline val loss at that fraction of training (negative: the variant is ahead)."
           + " Step time: the variant's mean seconds per step relative to the baseline's over the same steps, "
           "while its teacher runs (its forward and the extra loss: the paper reports about 8% lower throughput "
           "for LET) and after (identical work: far from 1.00x means the machine's load changed during the runs, "
           "and wall-clock numbers should not be trusted)."
           + (" Several seeds: mean ± sample std [min..max]." if len(seeds) > 1 else ''), '',
           '## Learning rates', '', lr_table, '']
    if len(seeds) > 1 or any(r['steps'] is None for per_seed in results.values() for r in per_seed):
        md += ['## Per seed', '', seed_table(results, seeds), '']
    md += ['![val loss vs steps](val_loss_vs_steps.png)', '', '![val loss vs training time](val_loss_vs_time.png)', '']
    path = os.path.join(cfg.speedup_dir, 'report.md')
    with open(path, 'w') as f:
        f.write('\n'.join(md))
    print(f"\nreport: {path}")
    return path


# -----------------------------------------------------------------------------

def quote(arg):
    """A shell word that reads well: --variants="{'let': {}}" rather than shlex's '"'"' escapes."""
    if shlex.quote(arg) == arg or any(c in arg for c in '"$`\\!'):
        return shlex.quote(arg)
    return f'"{arg}"'


def mean_final(evals_per_seed):
    """Mean over seeds of the final val loss: how a learning rate is judged."""
    return sum(evals[-1]['val_loss'] for evals in evals_per_seed) / len(evals_per_seed)


def main(args=None, overrides=None):
    """Runs the whole check; returns {variant: [compare() result per seed]}. args: as on the command line;
    overrides: a dict applied last (for tests)."""
    t_start = time.time()
    args = sys.argv[1:] if args is None else list(args)
    command = 'python speedup.py ' + ' '.join(map(quote, args + [
        f'--{k}={v if isinstance(v, str) else repr(v)}' for k, v in (overrides or {}).items()]))
    cfg = load_config(SpeedupConfig, args, overrides)

    # every setting of every run is checked before any compute is spent
    if not cfg.teacher:
        raise ConfigError("speedup.py compares LET against plain training: set teacher (e.g. "
                          "python speedup.py config/speedup_shakespeare.py)")
    if not cfg.variants or not cfg.seeds:
        raise ConfigError("variants and seeds must not be empty")
    if cfg.jobs < 0 or not all(isinstance(lr, float) and lr > 0 for lr in cfg.lr_grid):
        raise ConfigError(f"jobs={cfg.jobs} must be >= 0 and lr_grid={cfg.lr_grid} positive floats")
    for name, overrides in cfg.variants.items():
        if not isinstance(overrides, dict) or not isinstance(name, str) or name == 'baseline' or \
                not name.replace('-', '').replace('_', '').replace('.', '').isalnum():
            raise ConfigError(f"variants: {name!r}: {overrides!r} must be a name (letters, digits, - _ .; not "
                              f"'baseline') and a dict of TrainConfig overrides")
    grid = tuple(cfg.lr_grid) or (cfg.learning_rate,)

    def config(seed, name, overrides, lr):
        """One run at learning rate lr (min_lr keeps its ratio to it); a variant that sets its own
        learning_rate keeps it. With a grid, every folder names its learning rate."""
        lr = overrides.get('learning_rate', lr)
        settings = dict({'learning_rate': lr, 'min_lr': lr * cfg.min_lr / cfg.learning_rate}, **overrides)
        return run_config(cfg, seed, f"{name}-lr{lr:g}" if cfg.lr_grid else name, settings)

    variant_cfgs = {(seed, name, lr): config(seed, name, overrides, lr)
                    for seed in cfg.seeds for name, overrides in cfg.variants.items() for lr in grid}
    baseline_cfgs = {(seed, 'baseline', lr): config(seed, 'baseline', {'teacher': ''}, lr)
                     for seed in cfg.seeds for lr in grid}
    for (_, name, _), run_cfg in variant_cfgs.items():
        if run_cfg.teacher not in ('', cfg.teacher) and run_cfg.teacher.endswith('.pt') and \
                not os.path.isfile(run_cfg.teacher):
            raise ConfigError(f"variant {name!r}: teacher {run_cfg.teacher} does not exist (only the shared "
                              f"`teacher` is trained by teacher_train)")
    teacher_run, teacher_how = teacher_plan(cfg)
    runs = [*baseline_cfgs.values(), *variant_cfgs.values()] + ([teacher_run] if teacher_run is not None else [])
    n_gpus, _ = run_gpus([run_cfg.device for run_cfg in runs])
    if n_gpus and cfg.jobs > n_gpus:
        print(f"jobs={cfg.jobs}, but the runs have {n_gpus} GPU(s): {n_gpus} at a time, one per GPU")
    cfg.jobs = job_slots(cfg.jobs, n_gpus, os.cpu_count())  # what run_all does, and the report says

    ensure_dataset(cfg.dataset)
    os.makedirs(cfg.speedup_dir, exist_ok=True)
    if teacher_run is None:
        teacher = teacher_info(cfg, teacher_how)  # a given teacher is checked before anything trains

    # the baseline over the grid (and the teacher beside it), then the variants
    first = {'teacher': teacher_run} if teacher_run is not None else {}  # first: the longest, needed next
    first.update(baseline_cfgs)
    done = run_all(first, cfg.jobs, cfg.fresh)
    if teacher_run is not None:
        teacher = teacher_info(cfg, teacher_how)

    def best(name, cfgs):
        """The learning rate of `name` with the lowest mean final val loss over the seeds."""
        lrs = sorted({lr for (_, n, lr) in cfgs if n == name})
        return min(lrs, key=lambda lr: mean_final([done[(seed, name, lr)][0] for seed in cfg.seeds]))

    best_lr = {'baseline': best('baseline', baseline_cfgs)}

    def runs_at(name, lr):
        if 'learning_rate' in cfg.variants[name]:
            return lr == grid[0]  # the variant's own learning rate, one run per seed
        return cfg.tune_variants or lr == best_lr['baseline']

    wanted = {key: run_cfg for key, run_cfg in variant_cfgs.items() if runs_at(key[1], key[2])}
    done.update(run_all(wanted, cfg.jobs, cfg.fresh))
    for name in cfg.variants:
        best_lr[name] = best(name, wanted)

    chosen = {(seed, name): (baseline_cfgs if name == 'baseline' else variant_cfgs)[(seed, name, lr)]
              for name, lr in best_lr.items() for seed in cfg.seeds}
    hows = {(seed, name): done[(seed, name, lr)] for name, lr in best_lr.items() for seed in cfg.seeds}
    results = {name: [compare(hows[(seed, 'baseline')][0], hows[(seed, name)][0],
                              teacher['train_time'] if uses_teacher(chosen[(seed, name)]) else None,
                              teacher_steps(chosen[(seed, name)])) for seed in cfg.seeds]
               for name in cfg.variants}
    tried = {**baseline_cfgs, **wanted}
    grids = {name: {tried[(cfg.seeds[0], name, lr)].learning_rate:
                    [done[(seed, name, lr)][0][-1]['val_loss'] for seed in cfg.seeds]
                    for lr in sorted({lr for (_, n, lr) in tried if n == name})}
             for name in best_lr}  # {name: {learning rate: final val loss per seed}}
    write_report(cfg, command, chosen, results, teacher, hows, grids, time.time() - t_start)
    return results


if __name__ == '__main__':
    try:
        exit_on_error(main)
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
