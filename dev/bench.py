"""
What LET costs: train.py's own training steps timed plain and with the teacher, side by side in one run.

$ python -m dev.bench config/train_shakespeare_byte.py --teacher=out-shakespeare-teacher/ckpt.pt --let_proj=linear
$ python -m dev.bench config/train_shakespeare_byte.py --teacher=... --steps=30 --warmup=5 --repeats=3 --json=b.json

Arguments are train.py's (config files and --key=value, passed through) plus bench's own:
  --steps=N     measured steps per run (default 20)
  --warmup=W    steps dropped before measuring: allocator, caches and compilation warm up (default 5)
  --repeats=R   runs of each kind, interleaved (plain, LET, plain, LET, ...) so drift hits both alike; the
                ratios are then also given per repeat, which shows the noise (default 1)
  --json=PATH   also write every figure to PATH (rewritten after every run: a bench ended early keeps its runs)

Each run is a fresh single-process `python train.py ...` (so peak memory starts clean and compilation is
included), logging every step; the figures are medians of the logged step times after a warm-up. Two runs:
  plain   W warm-up steps, N measured steps                           -> row "plain", the baseline
  LET     W warm-up steps, N measured steps with the teacher,          -> row "LET"
          S_stop, W warm-up steps, N measured steps without it         -> row "LET after S_stop" (should be plain)
Then, in this process, the teacher's forward alone (as the LET step runs it, W + N forwards, the first W dropped):
its milliseconds and MFU beside the plain student step's. LET's overhead is set against two floors:
  measured   the teacher's forwards of one step over the plain step, both as measured: what LET costs at the
             efficiencies the two models reach; the overhead beyond it is the code's (the alignment loss and
             projector, and anything LET's step does worse)
  FLOP       the teacher's forward FLOPs over the student's training step FLOPs (~2*N_teacher against
             ~6*N_student per token: a teacher 10x smaller costs at least ~3%), which assumes the teacher runs at
             the student's fraction of peak; a narrow, deep teacher does not, so this one is information
"""

import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from configurator import ConfigError, TrainConfig, check_config, exit_on_error, load_config, read_config_file
from components.runtime import DTYPES, autocast, describe_machine, resolve_compile, resolve_device, resolve_dtype
from data.hub import HUB_NAME
from teacher import load_teacher

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, above dev/
BENCH_OPTIONS = {'steps': 20, 'warmup': 5, 'repeats': 1, 'json': ''}


class RunFailed(RuntimeError):
    pass


def parse_args(argv):
    """Splits bench's own options from train.py's arguments, which pass through unchanged."""
    opts, train_args = dict(BENCH_OPTIONS), []
    args = iter(argv)
    for arg in args:
        name = arg[2:].split('=', 1)[0] if arg.startswith('--') else None
        if name not in opts:
            train_args.append(arg)
            continue
        value = arg.split('=', 1)[1] if '=' in arg else next(args, None)  # --json=PATH or --json PATH
        if value is None:
            raise ConfigError(f"{arg} needs a value")
        if name != 'json':
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"--{name}={value}: must be a positive integer")
            value = int(value)
        opts[name] = value
    return opts, train_args


def environment(cfg):
    """Device, dtype and compilation as train.py resolves them (its own functions), and the machine in words."""
    device = resolve_device(cfg.device)
    device_type = torch.device(device).type
    return {'device': device, 'device_type': device_type, 'device_name': describe_machine(device),
            'torch': torch.__version__, 'dtype': resolve_dtype(cfg.dtype, device_type),
            'compile': resolve_compile(cfg.compile, device_type)}


def check_teacher(spec):
    """A teacher checkpoint that does not exist stops the bench before any run, naming what trains it."""
    hub_name = HUB_NAME.match(spec) and not spec.endswith('.pt')  # 'EleutherAI/pythia-160m'
    if not (spec.endswith('.pt') or os.sep in spec) or hub_name or os.path.isfile(spec) or os.path.isdir(spec):
        return  # a hub name, smollm2-135m, or something that exists: train.py's load_teacher judges it
    teacher_dir = os.path.normpath(os.path.dirname(spec) if spec.endswith('.pt') else spec)
    # the recipes in config/: a train.py config writing to that folder, or a speedup.py config that trains it
    recipes = []
    config_dir = os.path.join(REPO_DIR, 'config')
    for name in sorted(os.listdir(config_dir)):
        try:
            settings = read_config_file(os.path.join(config_dir, name))
        except Exception:
            continue  # not a config (or a broken one): no hint from it
        if os.path.normpath(str(settings.get('out_dir', ''))) == teacher_dir:
            recipes.append(f"python train.py config/{name}")
        elif settings.get('teacher') == spec and settings.get('teacher_train'):
            recipes.append(f"python speedup.py config/{name} (trains it before its comparison runs)")
    how = ' or '.join(recipes) or f"python train.py --out_dir={teacher_dir} (on the student's dataset)"
    raise ConfigError(f"teacher checkpoint {spec} does not exist; train it first with: {how}\n"
                      f"or name another teacher with --teacher=... (a ckpt.pt, smollm2-135m, a Hugging Face folder)")


def run_train(train_args, settings, out_dir):
    """One fresh `python train.py` process. Returns its per-step train records, its output and its peak RSS in GB."""
    cmd = [sys.executable, os.path.join(REPO_DIR, 'train.py'), *train_args,
           *(f"--{k}={v}" for k, v in settings.items()), f"--out_dir={out_dir}"]  # last, so they win
    with open(out_dir + '.out', 'w+') as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        # os.wait4 gives this child's own peak RSS; RUSAGE_CHILDREN would give the largest of all children so far
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RunFailed(f"train.py failed (exit {proc.returncode}):\n  {' '.join(cmd)}\n{text[-3000:]}")
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        records = [r for r in map(json.loads, f) if r['event'] == 'train']
    shutil.rmtree(out_dir)  # train.py saved a checkpoint at the end: for a large model, gigabytes of temp disk
    peak_rss = usage.ru_maxrss * (1 if sys.platform == 'darwin' else 1024) / 2**30  # macOS: bytes, Linux: KiB
    return records, text, peak_rss


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def at(records, iteration):
    return next(rec for rec in records if rec['iter'] == iteration)


def summarise(runs, first, last, cuda):
    """The figures of iterations first..last of runs [(records, output, peak_rss)], one run per repeat."""
    measured = [[rec for rec in records if first <= rec['iter'] <= last] for records, _, _ in runs]
    steps = [rec for run in measured for rec in run]
    dts = [rec['dt_ms'] for rec in steps]
    q1, _, q3 = statistics.quantiles(dts, n=4, method='inclusive') if len(dts) > 1 else dts * 3
    # each record holds the teacher calls so far: the window's calls are the last count minus the one before it
    calls = sum(run[-1]['teacher_calls'] - at(records, first - 1)['teacher_calls']
                for (records, _, _), run in zip(runs, measured))
    return {
        'step_ms': median(dts), 'step_ms_q1': q1, 'step_ms_q3': q3,
        'step_ms_per_repeat': [median([rec['dt_ms'] for rec in run]) for run in measured],
        'tok_per_s': median([rec['tok_per_s'] for rec in steps]),
        # CUDA: the most the allocator ever held (the records keep the running max); CPU: the process's peak RSS
        'peak_mem_gb': max(rec['cuda_peak_gb'] for rec in steps) if cuda else max(rss for _, _, rss in runs),
        'mfu': median([rec['mfu'] for rec in steps]),
        # the device's peak FLOP/s as train.py's MFU divides by it (None where it reports no MFU)
        'peak_flops': (steps[0]['flops_student'] * 1000 / steps[0]['dt_ms'] / steps[0]['mfu']
                       if steps[0]['mfu'] else None),
        'mfu_with_teacher': median([rec['mfu_with_teacher'] for rec in steps]),
        'flops_student': steps[0]['flops_student'], 'flops_teacher': steps[0]['flops_teacher'],
        'teacher_calls_per_step': calls / len(steps),
    }


def teacher_forward(cfg, env, steps, warmup):
    """Milliseconds per forward of the teacher alone, as train.py's LET step runs it: loaded in the run's dtype on
    CUDA (float32 elsewhere), compiled when the runs are, under the same autocast, on one micro-batch
    (batch_size x block_size); the mean of `steps` forwards after `warmup` (the first compiles)."""
    device = torch.device(env['device'])
    cuda = device.type == 'cuda'
    teacher = load_teacher(cfg.teacher, device, DTYPES[env['dtype']] if cuda else torch.float32,
                           trust=cfg.trust_checkpoint, layer=cfg.let_teacher_layer)
    if env['compile']:
        teacher.compile()
    idx = torch.randint(teacher.model.config.vocab_size, (cfg.batch_size, cfg.block_size), device=device)
    wait = torch.cuda.synchronize if cuda else lambda: None
    with autocast(device.type, env['dtype']):
        for _ in range(warmup):
            teacher(idx)
        wait()
        t0 = time.perf_counter()
        for _ in range(steps):
            teacher(idx)
        wait()
    return (time.perf_counter() - t0) / steps * 1000


def report(results, cfg, env, train_args, W, N, repeats):
    """The figures of the runs in results ({mode: [(records, output, peak_rss)]}): those of every mode with a run,
    and LET's against plain once both have one."""
    cuda = env['device_type'] == 'cuda'
    windows = {'plain': ('plain', W + 1, W + N), 'LET': ('LET', W + 1, W + N),
               'LET after S_stop': ('LET', 2 * W + N + 1, 2 * (W + N))}
    rep = {'env': env, 'train_args': train_args, 'steps': N, 'warmup': W, 'repeats': repeats,
           'tokens_per_iter': cfg.batch_size * cfg.gradient_accumulation_steps * cfg.block_size,
           'mem_kind': 'CUDA max allocated' if cuda else 'peak RSS',
           'modes': {name: summarise(results[mode], first, last, cuda)
                     for name, (mode, first, last) in windows.items() if results.get(mode)}}
    if 'plain' not in rep['modes'] or 'LET' not in rep['modes']:
        return rep

    plain, let, after = (rep['modes'][m] for m in ('plain', 'LET', 'LET after S_stop'))
    overhead = lambda a, b: b / a - 1
    rep['let_overhead'] = overhead(plain['step_ms'], let['step_ms'])
    rep['flop_floor'] = let['flops_teacher'] / let['flops_student']
    rep['after_stop_overhead'] = overhead(plain['step_ms'], after['step_ms'])
    # the noise: the same ratios per repeat, each run against the plain run beside it
    rep['let_overhead_per_repeat'] = list(map(overhead, plain['step_ms_per_repeat'], let['step_ms_per_repeat']))
    rep['after_stop_overhead_per_repeat'] = list(map(overhead, plain['step_ms_per_repeat'],
                                                     after['step_ms_per_repeat']))
    if cuda:
        # memory allocated after the last step that held the teacher (iteration S_stop) and after the release
        runs = [records for records, _, _ in results['LET']]
        rep['cuda_mem_gb_before_stop'] = median([at(records, W + N)['cuda_mem_gb'] for records in runs])
        rep['cuda_mem_gb_after_stop'] = median([rec['cuda_mem_gb'] for records in runs for rec in records
                                                if rec['iter'] > 2 * W + N])
        # the teacher's size as train.py prints it, for the memory the release should give back
        found = re.search(r"teacher: .* \(([\d.]+)M parameters", results['LET'][0][1])
        rep['teacher_params'] = float(found.group(1)) * 1e6 if found else None
    return rep


def teacher_figures(rep, forward_ms):
    """The teacher's forward alone beside the student: its time and MFU, and the measured floor, the teacher's
    forwards of one step over the plain step: what LET's overhead is at the efficiencies the two models reach (the
    FLOP floor assumes the teacher runs at the student's)."""
    plain, let = rep['modes']['plain'], rep['modes']['LET']
    calls, peak = let['teacher_calls_per_step'], plain['peak_flops']
    flops = let['flops_teacher'] / calls  # train.py's count for one forward
    return {'teacher_forward_ms': forward_ms, 'teacher_mfu': flops / (forward_ms / 1000) / peak if peak else None,
            'measured_floor': forward_ms * calls / plain['step_ms']}


def bench(train_args, steps=20, warmup=5, repeats=1, run=run_train, time_teacher=teacher_forward, progress=None):
    """Runs every mode `repeats` times, then times the teacher's forward alone (LET); returns the figures (a dict,
    as --json writes it). progress(figures so far) is called after each run."""
    cfg = load_config(TrainConfig, train_args)  # the settings the runs will read: a bad one fails here, once
    check_config(cfg)
    W, N = warmup, steps
    env = environment(cfg)
    let_on = bool(cfg.teacher) and cfg.let_lambda > 0
    if let_on:
        check_teacher(cfg.teacher)

    # Two runs per repeat, plain and LET, each a fresh process. A record's 'iter' counts the steps done:
    #   plain:  W warm-up steps, then N measured (iterations W+1 .. W+N)
    #   LET:    the same with the teacher, S_stop right after them, W steps to warm up again (the release and,
    #           compiled, the plain graph), then N measured steps after S_stop (iterations 2W+N+1 .. 2W+2N)
    # The evaluations (at 0 and at max_iters only: eval_interval > max_iters) are outside every step's dt, and
    # eval_iters=1 keeps them short.
    common = dict(init_from='scratch', log_interval=1, progress=False, eval_iters=1)
    settings = {'plain': dict(common, teacher='', max_iters=W + N, eval_interval=W + N + 1)}
    if let_on:
        settings['LET'] = dict(common, max_iters=2 * (W + N), eval_interval=2 * (W + N) + 1, let_stop=W + N)
    results = {mode: [] for mode in settings}
    figures = lambda: report(results, cfg, env, train_args, W, N, repeats)
    with tempfile.TemporaryDirectory(prefix='bench-') as tmp:
        for r in range(repeats):
            for mode in settings:  # interleaved: plain, LET, plain, LET, ... so drift hits both alike
                print(f"run {r + 1}/{repeats}: {mode} ...", flush=True)
                results[mode].append(run(train_args, settings[mode], os.path.join(tmp, f"{mode}-{r}")))
                if progress:
                    progress(figures())
    rep = figures()
    if let_on:  # after the runs: this process holds no device memory while they run
        print("the teacher's forward alone ...", flush=True)
        rep.update(teacher_figures(rep, time_teacher(cfg, env, N, W)))
    return rep


# -----------------------------------------------------------------------------
# the table

def pct(x):
    return f"{x * 100:+.1f}%"


def per_repeat(xs):
    return f"(per repeat: {', '.join(map(pct, xs))})" if len(xs) > 1 else "(one repeat; --repeats=3 shows the noise)"


def print_report(rep):
    env = rep['env']
    print(f"machine: {env['device_name']} | dtype {env['dtype']} | compile {'on' if env['compile'] else 'off'}")
    print(f"train.py {' '.join(rep['train_args']) or '(defaults)'}")
    print(f"{rep['tokens_per_iter']:,} tokens/iter | {rep['warmup']} warm-up + {rep['steps']} measured steps | "
          f"{rep['repeats']} repeat(s)")
    header = ['mode', 'step ms', 'step ms IQR', 'tok/s', f"{rep['mem_kind']} GB", 'MFU student',
              'MFU with teacher', 'teacher calls/step']
    mfu = lambda x: f"{x * 100:.1f}%" if x is not None else "n/a"
    # the steps after S_stop run in the LET process, so their peak memory is that process's
    rows = [[mode, f"{f['step_ms']:.2f}", f"{f['step_ms_q1']:.2f}-{f['step_ms_q3']:.2f}", f"{f['tok_per_s']:,.0f}",
             f"{f['peak_mem_gb']:.3f}" if mode != 'LET after S_stop' else "(LET's run)",
             mfu(f['mfu']), mfu(f['mfu_with_teacher']), f"{f['teacher_calls_per_step']:g}"]
            for mode, f in rep['modes'].items()]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print('  '.join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    if rep['modes']['plain']['mfu'] is None:
        print("MFU: n/a (unknown peak on this device; train.py knows the bf16/fp16 peaks of common GPUs)")

    if 'let_overhead' not in rep:
        print("LET: no teacher (teacher='' or let_lambda=0); name one with --teacher=... for the LET rows")
        return
    print(f"LET overhead while the teacher runs: {pct(rep['let_overhead'])} step time "
          f"{per_repeat(rep['let_overhead_per_repeat'])}")
    print(f"  measured floor (the teacher's forwards of a step / the plain step): {pct(rep['measured_floor'])}")
    print(f"    the teacher's forward alone: {rep['teacher_forward_ms']:.2f} ms x "
          f"{rep['modes']['LET']['teacher_calls_per_step']:g} per step, MFU {mfu(rep['teacher_mfu'])}; the plain "
          f"step: {rep['modes']['plain']['step_ms']:.2f} ms, MFU {mfu(rep['modes']['plain']['mfu'])}")
    print(f"  FLOP floor (teacher forward / student training step): {pct(rep['flop_floor'])}")
    print(f"LET overhead after S_stop: {pct(rep['after_stop_overhead'])} step time "
          f"{per_repeat(rep['after_stop_overhead_per_repeat'])}")
    if 'cuda_mem_gb_before_stop' in rep:
        before, after = rep['cuda_mem_gb_before_stop'], rep['cuda_mem_gb_after_stop']
        weights = ''
        if rep['teacher_params']:
            nbytes = {'float32': 4, 'bfloat16': 2, 'float16': 2}[env['dtype']]
            weights = f" (the teacher's weights: {rep['teacher_params'] * nbytes / 2**30:.3f} GB)"
        print(f"teacher memory: CUDA allocated {before:.3f} GB at the last step with the teacher, {after:.3f} GB "
              f"after S_stop: {before - after:.3f} GB returned{weights}")
    else:
        print("teacher memory: not measured: RSS is not informative on CPU (freed memory stays with the allocator, "
              "and the peak RSS is mostly Python and torch)")


def main(argv=None):
    opts, train_args = exit_on_error(parse_args, sys.argv[1:] if argv is None else argv)

    def write(figures):
        if opts['json']:
            with open(opts['json'] + '.tmp', 'w') as f:
                json.dump(figures, f, indent=1)
            os.replace(opts['json'] + '.tmp', opts['json'])  # whole or not at all, should this be ended
    rep = exit_on_error(functools.partial(bench, progress=write), train_args, opts['steps'], opts['warmup'],
                        opts['repeats'], failed=(RunFailed,))
    print_report(rep)
    write(rep)
    if opts['json']:
        print(f"figures written to {opts['json']}")
    return rep


if __name__ == '__main__':
    main()
