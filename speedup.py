"""
A quick, honest check of the LET speedup (arXiv 2602.05393): train a plain baseline, tuned over a grid of
learning rates, and the variants (LET, and the paper's distillation baselines SALT and RKD) on the same data
order, the same student initialisation and the same schedule; then ask how many steps and how much training
time each variant needs to reach the tuned baseline's final validation loss.

$ python speedup.py config/speedup_shakespeare.py                      # byte-level Shakespeare, CPU
$ python speedup.py config/speedup_shakespeare.py --seeds="(1, 2)"     # other seeds
$ python speedup.py config/speedup_smollm2.py                          # SmolLM2-135M teacher, one GPU

Every TrainConfig setting (configurator.py) is valid here and shared by all student runs; speedup.py adds:
  variants       {name: {TrainConfig overrides}}, each applied on top of the shared settings for one run: only
                 what the variant changes (a teacher it names stays its own, whatever --teacher says)
  seeds          one baseline and one run per variant for each seed (data order and student init follow it)
  lr_grid        learning rates tried for the baseline (min_lr keeps its ratio to learning_rate); the one with
                 the lowest mean final val loss over the seeds sets the target, and the variants run at it.
                 Empty: learning_rate alone, and the report says the baseline is untuned
  tune_variants  True: every variant also runs over lr_grid and is reported at its own best
  groups         {ablation: (variant names) or {row label: variant name}}: the report adds, for each, a table of
                 the baseline and those variants and a plot of their curves (a variant may be in several)
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
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch

from components.checkpoint import load_checkpoint, plain, read_log
from speedup_report import best_rate, group_rows, speedups, teacher_ckpt, teacher_info, write_report
from speedup_report import compare  # noqa: F401 (dev/gpu_checks.py imports it from here)
from components.runtime import resolve_device
from configurator import ConfigError, TrainConfig, check_config, exit_on_error, load_config, to_args
from data.common import resolve_data_dir

REPO_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class SpeedupConfig(TrainConfig):
    variants: dict = field(default_factory=lambda: {'let': {}})  # name -> TrainConfig overrides of one run
    seeds: tuple = (1337,)            # student seeds; `seed` itself only seeds the teacher's training
    groups: dict = field(default_factory=dict)  # ablation -> its variants: a table and a plot each in the report
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


def trains_teacher(cfg):
    """True when `teacher` names a checkpoint to train (missing) or one that teacher_train may have trained."""
    return bool(cfg.teacher_train) and cfg.teacher.endswith('.pt') and (
        not os.path.isfile(cfg.teacher) or os.path.basename(cfg.teacher) == 'ckpt.pt')


def ensure_dataset(dataset):
    """Prepares data/shakespeare/<tokenizer> when missing; any other missing dataset is an error that names its
    prepare script (the Pile, say, is too large to fetch behind the user's back)."""
    data_dir = resolve_data_dir(dataset)
    if os.path.isfile(os.path.join(data_dir, 'meta.json')):
        return
    parts = dataset.split('/')
    if not os.path.isabs(dataset) and len(parts) == 2 and parts[0] == 'shakespeare':
        from data.shakespeare.prepare import prepare
        from data.common import TOKENIZERS
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


def quote(arg):
    """A shell word that reads well: --variants="{'let': {}}" rather than shlex's '"'"' escapes."""
    if shlex.quote(arg) == arg or any(c in arg for c in '"$`\\!'):
        return shlex.quote(arg)
    return f'"{arg}"'


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


def teacher_plan(cfg):
    """The teacher's training run when speedup.py trains (or finishes) it, else None; and how it came to be.
    A missing teacher without teacher_train is an error now, before any compute."""
    path = teacher_ckpt(cfg)
    if trains_teacher(cfg):
        tcfg = teacher_config(cfg)
        if not os.path.isfile(path):
            return tcfg, 'trained here'
        state = saved_state(tcfg)
        if state and same_settings(state[0], tcfg):
            return tcfg, 'trained with teacher_train by an earlier run'
        print(f"teacher {cfg.teacher} exists but was not trained with teacher_train: used as is (move "
              f"{os.path.dirname(path) or '.'} away to train it with teacher_train)")
    elif cfg.teacher.endswith('.pt') and not os.path.isfile(path):
        raise ConfigError(f"teacher {cfg.teacher} does not exist and teacher_train is empty: set teacher_train "
                          f"(e.g. teacher_train = dict(n_layer=3, n_embd=128, max_iters=3000)) to train it here")
    return None, 'given'


def is_name(text, marks):
    """Whether text is letters and digits, with the punctuation in marks: a run folder's or a plot file's name."""
    return isinstance(text, str) and text.translate({ord(mark): None for mark in marks}).isalnum()


def check_settings(cfg):
    """speedup.py's own settings, checked before any compute is spent (each run's own: run_config)."""
    if not cfg.teacher:
        raise ConfigError("speedup.py compares LET against plain training: set teacher (e.g. "
                          "python speedup.py config/speedup_shakespeare.py)")
    if not cfg.variants or not cfg.seeds:
        raise ConfigError("variants and seeds must not be empty")
    if cfg.jobs < 0 or not all(isinstance(lr, float) and lr > 0 for lr in cfg.lr_grid):
        raise ConfigError(f"jobs={cfg.jobs} must be >= 0 and lr_grid={cfg.lr_grid} positive floats")
    for name, overrides in cfg.variants.items():
        if not isinstance(overrides, dict) or name == 'baseline' or not is_name(name, '-_.'):
            raise ConfigError(f"variants: {name!r}: {overrides!r} must be a name (letters, digits, - _ .; not "
                              f"'baseline') and a dict of TrainConfig overrides")
    for group, members in cfg.groups.items():
        names = [name for _, name in group_rows(members)]
        unknown = [name for name in names if name not in cfg.variants]
        if not is_name(group, '-_') or unknown or not names:
            raise ConfigError(f"groups: {group!r}: {members!r} must be a name (letters, digits, - _) and variant "
                              f"names{f'; not variants: {unknown}' if unknown else ''}")


def plan_runs(cfg):
    """Every student run the settings make, checked: ({(seed, 'baseline', lr): TrainConfig}, the same of the
    variants), each at every learning rate of the grid (main trains a variant only at those it needs)."""
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
    return baseline_cfgs, variant_cfgs


def main(args=None, overrides=None):
    """Runs the whole check; returns {variant: [compare() result per seed]}. args: as on the command line;
    overrides: a dict applied last (for tests)."""
    t_start = time.time()
    args = sys.argv[1:] if args is None else list(args)
    command = 'python speedup.py ' + ' '.join(map(quote, args + to_args(overrides or {})))
    cfg = load_config(SpeedupConfig, args, overrides)
    check_settings(cfg)  # every setting of every run is checked before any compute is spent
    baseline_cfgs, variant_cfgs = plan_runs(cfg)
    teacher_run, teacher_how = teacher_plan(cfg)
    every = [*baseline_cfgs.values(), *variant_cfgs.values()] + ([teacher_run] if teacher_run is not None else [])
    n_gpus, _ = run_gpus([run_cfg.device for run_cfg in every])
    if n_gpus and cfg.jobs > n_gpus:
        print(f"jobs={cfg.jobs}, but the runs have {n_gpus} GPU(s): {n_gpus} at a time, one per GPU")
    cfg.jobs = job_slots(cfg.jobs, n_gpus, os.cpu_count())  # what run_all does, and the report says

    ensure_dataset(cfg.dataset)
    os.makedirs(cfg.speedup_dir, exist_ok=True)
    if teacher_run is None:
        teacher = teacher_info(cfg, teacher_how)  # a given teacher is checked before anything trains

    def trained(cfgs):
        """{key: (TrainConfig, eval records, how)} of the runs cfgs, trained, resumed or reused."""
        done = run_all(cfgs, cfg.jobs, cfg.fresh)
        return {key: (run_cfg, *done[key]) for key, run_cfg in cfgs.items()}

    # the baseline over the grid (and the teacher beside it, first: the longest, needed next), then the variants
    runs = trained({**({'teacher': teacher_run} if teacher_run is not None else {}), **baseline_cfgs})
    runs.pop('teacher', None)  # teacher_info reads its log
    if teacher_run is not None:
        teacher = teacher_info(cfg, teacher_how)
    best_lr = {'baseline': best_rate(runs, 'baseline', cfg.seeds)}

    def runs_at(name, lr):
        if 'learning_rate' in cfg.variants[name]:
            return lr == (cfg.lr_grid or (cfg.learning_rate,))[0]  # the variant's own learning rate, once a seed
        return cfg.tune_variants or lr == best_lr['baseline']

    runs.update(trained({key: run_cfg for key, run_cfg in variant_cfgs.items() if runs_at(key[1], key[2])}))
    best_lr.update({name: best_rate(runs, name, cfg.seeds) for name in cfg.variants})
    results = speedups(runs, best_lr, cfg.seeds, teacher['train_time'])
    write_report(cfg, command, runs, best_lr, results, teacher, time.time() - t_start)
    return results


if __name__ == '__main__':
    try:
        exit_on_error(main)
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
