#!/usr/bin/env python
"""
Step time side by side: nanoGPT's train.py against this repository's train.py, the same model on the CPU.

    git clone https://github.com/karpathy/nanoGPT /tmp/nanoGPT      (any checkout; 3adf61e was measured)
    python -m dev.bench_nanogpt --nanogpt=/tmp/nanoGPT/train.py --repeats=10

Both run as subprocesses, interleaved (nanoGPT, ours, nanoGPT, ours, ...) for --repeats pairs, on the byte-level
Shakespeare of this repository (python data/shakespeare/prepare.py --tokenizer=byte). nanoGPT's train.py reads
configurator.py and data/<dataset>/ from its working folder, so it runs in a scratch folder holding links to both
(data/shakebyte/ there links our bins), removed at the end: nothing is written into the checkout. Each run does
--warmup + --steps training steps; the first --warmup are dropped and the median of the rest is that run's step
time. Every pair gives one ratio ours / nanoGPT; the summary is the median and min-max of those ratios. No asserts:
a ratio measured side by side, with its spread.

Two measures per run:
  self   the trainer's own per-step time. nanoGPT: the 'time ...ms' it prints, which spans one whole loop
         iteration (including its logging and the next batch read). ours: 'dt_ms' of the 'train' records in
         out_dir/log.jsonl (lr, data, forward/backward, optimizer step; not the logging after it).
  loop   the interval between consecutive 'iter N:' lines on the trainer's stdout, stamped here as they arrive
         (PYTHONUNBUFFERED=1): the same definition on both sides, one whole loop iteration each. 'self' leaves our
         log line's host time out of ours but not out of nanoGPT's, so the loop ratio is the one to compare with
         a target (dev/gpu_check.py judges it).

Setting (both), --preset=cpu (the default): GPT-2 flavour, n_layer=4, n_head=4, n_embd=192, block_size=128,
batch_size=16, accumulation 1, dropout 0, bias, fp32, cpu, no compile, OMP_NUM_THREADS=2 (and MKL_NUM_THREADS=2),
byte vocabulary of 256. Steps several times slower than the fastest (other work on the machine) are set aside as
'contended'.

--preset=gpt2-124m-gpu: GPT-2 124M (12 x 768, 12 heads, block 1024, batch 16, accumulation 1, bias, dropout 0) on
cuda in bf16, compiled, with GPT-2's padded vocabulary of 50,304 (the byte data stands in for GPT-2 tokens: ids
below 256 are valid GPT-2 ids, and the step's cost does not depend on which ids it reads); 10 warm-up + 20
measured steps, 2 pairs, no waiting for an idle CPU. --device, --dtype, --compile, the model's sizes and --vocab
override single settings of either preset, and --max_time bounds all pairs together (dev/gpu_check.py): a run
that reaches it is ended, and the pairs before it are the result. --json is rewritten after every pair, so a
measurement ended from outside keeps its pairs:

    python -m dev.bench_nanogpt --nanogpt=/tmp/nanoGPT/train.py --preset=gpt2-124m-gpu --json=nanogpt.json
"""

import argparse
import atexit
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, above dev/

# the settings both trainers get: a preset, then single overrides from the command line
PRESETS = {
    'cpu': dict(device='cpu', compile=False, dtype='float32', n_layer=4, n_head=4, n_embd=192, block_size=128,
                batch_size=16, vocab='byte'),
    'gpt2-124m-gpu': dict(device='cuda', compile=True, dtype='bfloat16', n_layer=12, n_head=12, n_embd=768,
                          block_size=1024, batch_size=16, vocab='gpt2'),
}
# the measurement's defaults per preset: a GPU step is short and steady, and the CPU's load matters less to it
RUN_DEFAULTS = {
    'cpu': dict(warmup=10, steps=30, repeats=8, quiet_busy=0.1),
    'gpt2-124m-gpu': dict(warmup=10, steps=20, repeats=2, quiet_busy=1.0),
}
VOCAB = {'byte': 256, 'gpt2': 50304}  # GPT-2's 50,257 padded to a multiple of 64, as nanoGPT pads it
FIXED_FLAGS = ['--bias=True', '--dropout=0.0', '--gradient_accumulation_steps=1', '--eval_interval=100000',
               '--eval_iters=1', '--log_interval=1']


def model_flags(settings):
    """--key=value flags for both trainers (vocab is not one: it is the data's, see the datasets)."""
    return [f'--{k}={v}' for k, v in settings.items() if k != 'vocab'] + FIXED_FLAGS


ITER_LINE = re.compile(r'^iter (\d+): .*?time ([0-9.]+)ms')


def link_bins(d, src_dir):
    os.makedirs(d, exist_ok=True)
    for split in ('train', 'val'):
        dst = os.path.join(d, f'{split}.bin')
        if not os.path.exists(dst):
            src = os.path.join(src_dir, f'{split}.bin')
            if not os.path.isfile(src):
                sys.exit(f"{src} is missing: prepare it with python data/shakespeare/prepare.py --tokenizer=byte "
                         f"or pass --data_src")
            os.symlink(os.path.abspath(src), dst)


def ensure_nanogpt_dataset(nanogpt_dir, name, src_dir, vocab_size=256):
    """data/<name>/ in the nanoGPT clone: symlinks to our train.bin/val.bin and meta.pkl {'vocab_size': 256}.
    For GPT-2's vocabulary no meta.pkl: nanoGPT then takes its own 50,304."""
    d = os.path.join(nanogpt_dir, 'data', name)
    link_bins(d, src_dir)
    meta = os.path.join(d, 'meta.pkl')
    if vocab_size == 256 and not os.path.exists(meta):
        with open(meta, 'wb') as f:
            pickle.dump({'vocab_size': 256}, f)
    if vocab_size != 256 and os.path.exists(meta):
        sys.exit(f"{meta} would give nanoGPT a vocabulary of its own: remove it or pass another --nanogpt_dataset")


def ours_dataset_with_vocab(src_dir, vocab_size, parent):
    """Our dataset under another vocabulary size: the same bins (symlinked) and a meta.json that says so, in a
    folder under parent. train.py pads nothing more: 50,304 is a multiple of 64 already."""
    with open(os.path.join(src_dir, 'meta.json')) as f:
        meta = json.load(f)
    meta.update(tokenizer=f"{meta['tokenizer']}-as-{vocab_size}-ids", vocab_size=vocab_size)
    d = os.path.join(parent, f'data-vocab{vocab_size}')
    link_bins(d, src_dir)
    with open(os.path.join(d, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    return d


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs' time spent busy over the next `seconds` (from /proc/stat; None where missing)."""
    def snap():
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(a):
    """Before a run: wait (up to --max_wait s) until the CPUs are idle for 3 samples in a row (other work on the
    machine would otherwise share the cores with the trainer). Returns seconds waited."""
    if a.quiet_busy >= 1.0:
        return 0.0
    t0, calm = time.monotonic(), 0
    while time.monotonic() - t0 < a.max_wait:
        busy = cpu_busy(1.0)
        if busy is None:
            return 0.0
        calm = calm + 1 if busy <= a.quiet_busy else 0
        if calm >= 3:
            break
    return time.monotonic() - t0


class OutOfTime(Exception):
    """A run was ended at its time limit (--timeout, or what --max_time left)."""


def nanogpt_workdir(nanogpt, name, src_dir, vocab_size, parent):
    """The working folder of nanoGPT's train.py, made in parent: a link to the checkout's configurator.py (which
    train.py reads from its working folder) and data/<name>/ (ensure_nanogpt_dataset)."""
    os.makedirs(parent, exist_ok=True)
    os.symlink(os.path.join(os.path.dirname(os.path.abspath(nanogpt)), 'configurator.py'),
               os.path.join(parent, 'configurator.py'))
    ensure_nanogpt_dataset(parent, name, src_dir, vocab_size)
    return parent


def run_proc(cmd, cwd, env, timeout, label):
    """Runs cmd; returns (rc, stdout lines, arrival time of each line (perf_counter), stderr text). At timeout the
    command is killed, printing or not (compiling prints nothing for a minute): OutOfTime."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    fired = threading.Event()

    def kill():  # the stdout loop below ends when the killed command's pipe closes
        fired.set()
        p.kill()
    timer = threading.Timer(timeout, kill)
    timer.start()
    err = []
    t_err = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
    t_err.start()
    lines, stamps = [], []
    try:
        for line in p.stdout:
            stamps.append(time.perf_counter())
            lines.append(line.rstrip('\n'))
        rc = p.wait()
    except BaseException:  # an error or Ctrl-C here: the command does not outlive it
        p.kill()
        raise
    finally:
        timer.cancel()
    t_err.join(timeout=5)
    if fired.is_set() and rc != 0:  # (a command that had ended just before is not out of time)
        raise OutOfTime(f"{label}'s run ended at its time limit ({timeout:.0f} s)")
    return rc, lines, stamps, ''.join(err)


def loop_intervals(lines, stamps, step_of_line):
    """{step: seconds since the previous 'iter' line} from line arrival times; step_of_line maps the printed
    number to the 0-based step index."""
    out, prev = {}, None
    for line, t in zip(lines, stamps):
        m = ITER_LINE.match(line)
        if not m:
            continue
        step = step_of_line(int(m.group(1)))
        if prev is not None and step == prev[0] + 1:
            out[step] = t - prev[1]
        prev = (step, t)
    return out


def fail(label, rc, lines, err):
    tail = '\n'.join(lines[-15:])
    if rc in (-9, -15):
        rc = f"{rc}: killed by the system"
    sys.exit(f"{label} run failed (rc {rc}).\n--- stdout tail ---\n{tail}\n--- stderr tail ---\n{err[-3000:]}")


def run_nanogpt(a, env, timeout):
    cwd = a.nanogpt_cwd
    out_dir = tempfile.mkdtemp(prefix='cmp_nanogpt_')
    # nanoGPT runs iterations 0..max_iters inclusive; iteration 0 includes its first evaluation
    cmd = [sys.executable, os.path.abspath(a.nanogpt), f'--dataset={a.nanogpt_dataset}', *a.model_flags,
           f'--max_iters={a.warmup + a.steps - 1}', '--always_save_checkpoint=False', f'--out_dir={out_dir}',
           *a.nanogpt_extra]
    try:
        rc, lines, stamps, err = run_proc(cmd, cwd, env, timeout, 'nanoGPT')
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if rc != 0:
        fail('nanoGPT', rc, lines, err)
    self_ms = {}
    for line in lines:
        m = ITER_LINE.match(line)
        if m:
            self_ms[int(m.group(1))] = float(m.group(2))  # printed number = 0-based step
    loop = loop_intervals(lines, stamps, lambda n: n)
    return select(self_ms, loop, a, 'nanoGPT', lines, err)


def run_ours(a, env, timeout):
    cwd = os.path.dirname(os.path.abspath(a.ours))
    parent = tempfile.mkdtemp(prefix='cmp_ours_')
    out_dir = os.path.join(parent, 'out')  # fresh and absent: init_from=scratch never meets a checkpoint
    cmd = [sys.executable, os.path.abspath(a.ours), f'--dataset={a.ours_dataset}', *a.model_flags,
           f'--max_iters={a.warmup + a.steps}', '--progress=False', '--init_from=scratch', f'--out_dir={out_dir}',
           *a.ours_extra]
    try:
        rc, lines, stamps, err = run_proc(cmd, cwd, env, timeout, 'ours')
        if rc != 0:
            fail('ours', rc, lines, err)
        self_ms = {}
        with open(os.path.join(out_dir, 'log.jsonl')) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get('event') == 'train' and 'dt_ms' in r:
                    self_ms[int(r['iter']) - 1] = float(r['dt_ms'])  # 'iter' counts steps done: step = iter - 1
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    loop = loop_intervals(lines, stamps, lambda n: n - 1)
    return select(self_ms, loop, a, 'ours', lines, err)


def select(self_ms, loop, a, label, lines, err):
    steps = range(a.warmup, a.warmup + a.steps)
    missing = [s for s in steps if s not in self_ms]
    if missing:
        fail(f'{label} (no step time for steps {missing[:5]}...)', 0, lines, err)
    s = [self_ms[i] for i in steps]
    lp = [loop[i] * 1000 for i in steps if i in loop]
    threads = next((m.group(1) for m in (re.search(r'torch threads (\d+)', x) for x in lines) if m), None)
    return {'self_ms': s, 'loop_ms': lp, 'self_med': statistics.median(s),
            'loop_med': statistics.median(lp) if lp else float('nan'), 'threads_reported': threads}


def spread(xs):
    xs = [x for x in xs if x == x]
    if not xs:
        return 'n/a'
    return f"{statistics.median(xs):.3f} [{min(xs):.3f} - {max(xs):.3f}]"


def p10(xs):
    xs = sorted(xs)
    return xs[max(0, int(0.1 * len(xs)) - 1)] if xs else float('inf')


def clean(xs, limit):
    return [x for x in xs if x <= limit]


def med(xs):
    return statistics.median(xs) if xs else float('nan')


def evaluate(results, a):
    """Clean-step statistics of every pair against the current floor: the lowest 10th percentile of step time
    over all runs so far (both trainers). A step is clean when it is at most clean_factor x floor; a pair is valid
    when both runs have at least min_clean x steps clean. Contention from outside (other machines' work on the
    same host) shows up as whole stretches of steps several times slower, which this sets aside."""
    floor = min(p10(x[k]['self_ms']) for x in results for k in ('nanogpt', 'ours'))
    limit = a.clean_factor * floor
    for x in results:
        for k in ('nanogpt', 'ours'):
            r = x[k]
            cs, cl = clean(r['self_ms'], limit), clean(r['loop_ms'], limit * 1.2)
            r['clean_n'], r['clean_med'], r['clean_loop_med'] = len(cs), med(cs), med(cl)
        x['valid'] = all(x[k]['clean_n'] >= a.min_clean * a.steps for k in ('nanogpt', 'ours'))
        x['ratio_clean'] = x['ours']['clean_med'] / x['nanogpt']['clean_med'] if x['valid'] else float('nan')
        x['ratio_clean_loop'] = (x['ours']['clean_loop_med'] / x['nanogpt']['clean_loop_med'] if x['valid']
                                 else float('nan'))
    return floor, limit


def row(x):
    ng, us = x['nanogpt'], x['ours']
    return (f"{x['repeat']:>3} | {ng['self_med']:>8.1f} {us['self_med']:>8.1f} {x['ratio_self']:>6.3f} | "
            f"{ng['clean_med']:>8.1f} ({ng['clean_n']:>2}) {us['clean_med']:>8.1f} ({us['clean_n']:>2}) "
            f"{x['ratio_clean']:>6.3f} | {x['ratio_clean_loop']:>6.3f}{'' if x['valid'] else '  contended'}")


def flag_bool(text):
    if text not in ('True', 'False'):
        raise argparse.ArgumentTypeError(f"{text!r}: use True or False")
    return text == 'True'


def parse_args(argv=None):
    """The options, with the preset's settings and run defaults filled in where none was given; a.model_flags are
    the flags both trainers get, a.vocab_size the vocabulary both use."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nanogpt', required=True, help="nanoGPT's train.py, in a checkout of karpathy/nanoGPT")
    ap.add_argument('--ours', default=os.path.join(REPO_DIR, 'train.py'), help="our train.py (run in its folder)")
    ap.add_argument('--preset', choices=sorted(PRESETS), default='cpu', help="the model, device and precision")
    ap.add_argument('--device', default=None)
    ap.add_argument('--dtype', default=None, choices=['float32', 'bfloat16', 'float16'])
    ap.add_argument('--compile', type=flag_bool, default=None, help="True or False")
    for size in ('n_layer', 'n_head', 'n_embd', 'block_size', 'batch_size'):
        ap.add_argument(f'--{size}', type=int, default=None)
    ap.add_argument('--vocab', choices=sorted(VOCAB), default=None,
                    help="byte: 256 ids; gpt2: 50,304 (the byte data read as GPT-2 ids)")
    ap.add_argument('--repeats', type=int, default=None, help="pairs (nanoGPT, ours) to run")
    ap.add_argument('--warmup', type=int, default=None)
    ap.add_argument('--steps', type=int, default=None)
    ap.add_argument('--threads', type=int, default=2, help="OMP_NUM_THREADS / MKL_NUM_THREADS for both")
    ap.add_argument('--ours_dataset', default='shakespeare/byte', help="byte-level data of ours (data/<name>/)")
    ap.add_argument('--nanogpt_dataset', default=None, help="its name in nanoGPT's data/ (default: shakebyte, "
                    "shakebyte50304 for the gpt2 vocabulary)")
    ap.add_argument('--data_src', default=None,
                    help="folder with train.bin/val.bin for nanoGPT's dataset "
                         "(default: <ours dir>/data/<ours_dataset>)")
    ap.add_argument('--ours_extra', nargs='*', default=[], help="more --key=value flags for ours")
    ap.add_argument('--nanogpt_extra', nargs='*', default=[], help="more --key=value flags for nanoGPT")
    ap.add_argument('--clean_factor', type=float, default=1.5,
                    help="a step is clean when at most this x the floor (lowest run 10th percentile)")
    ap.add_argument('--min_clean', type=float, default=0.5, help="fraction of clean steps a run needs to count")
    ap.add_argument('--extra_pairs', type=int, default=0,
                    help="run up to this many more pairs while fewer than --repeats pairs are uncontended")
    ap.add_argument('--quiet_busy', type=float, default=None,
                    help="before each run, wait until the CPUs are at most this busy (1 = never wait)")
    ap.add_argument('--max_wait', type=float, default=300, help="longest wait for quiet before a run, seconds")
    ap.add_argument('--timeout', type=float, default=900, help="seconds per run")
    ap.add_argument('--max_time', type=float, default=None,
                    help="seconds for all pairs: a pair starts only when one as long as the last still fits")
    ap.add_argument('--json', default=None, help="write every run's step times here")
    a = ap.parse_args(argv)
    settings = dict(PRESETS[a.preset])
    for k in settings:
        if getattr(a, k) is not None:
            settings[k] = getattr(a, k)
    for k, v in RUN_DEFAULTS[a.preset].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.settings, a.model_flags, a.vocab_size = settings, model_flags(settings), VOCAB[settings['vocab']]
    if a.nanogpt_dataset is None:
        a.nanogpt_dataset = 'shakebyte' if a.vocab_size == 256 else f'shakebyte{a.vocab_size}'
    return a


def summary(results):
    """The ratios ours / nanoGPT over all pairs and over the uncontended ones, as medians with their range."""
    def stat(xs):
        xs = [x for x in xs if x == x]
        return {'median': statistics.median(xs), 'min': min(xs), 'max': max(xs)} if xs else None
    valid = [x for x in results if x['valid']]
    return {'pairs': len(results), 'valid_pairs': len(valid),
            'ratio': stat([x['ratio_self'] for x in results]),
            'ratio_loop': stat([x['ratio_loop'] for x in results]),
            'ratio_clean': stat([x['ratio_clean'] for x in valid]),
            'ratio_clean_loop': stat([x['ratio_clean_loop'] for x in valid]),
            'nanogpt_ms': stat([x['nanogpt']['self_med'] for x in results]),
            'ours_ms': stat([x['ours']['self_med'] for x in results])}


def write_json(a, results, stopped):
    """--json: the pairs so far, with their statistics (evaluate) and why the measurement stopped early, if it did."""
    if not a.json:
        return
    floor = evaluate(results, a)[0] if results else None
    with open(a.json + '.tmp', 'w') as f:
        json.dump({'args': vars(a), 'preset': a.preset, 'settings': a.settings, 'floor_ms': floor,
                   'stopped_early': stopped, 'summary': summary(results), 'results': results}, f, indent=1)
    os.replace(a.json + '.tmp', a.json)  # whole or not at all, should this process be ended while writing


def main(argv=None):
    a = parse_args(argv)
    t_start = time.monotonic()
    ours_dir = os.path.dirname(os.path.abspath(a.ours))
    src_dir = os.path.join(ours_dir, 'data', a.ours_dataset)
    scratch = tempfile.mkdtemp(prefix='bench_nanogpt_')
    atexit.register(shutil.rmtree, scratch, True)  # also when a run fails and sys.exit ends this
    a.nanogpt_cwd = nanogpt_workdir(a.nanogpt, a.nanogpt_dataset, a.data_src or src_dir, a.vocab_size,
                                    os.path.join(scratch, 'nanogpt'))
    if a.vocab_size != 256:  # ours reads the same bins under a meta.json of the larger vocabulary
        a.ours_dataset = ours_dataset_with_vocab(src_dir, a.vocab_size, scratch)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads), PYTHONUNBUFFERED='1')
    env.pop('RANK', None)  # never DDP

    print(f"ours: {os.path.abspath(a.ours)}\nnanoGPT: {os.path.abspath(a.nanogpt)}\n"
          f"preset {a.preset}: {' '.join(f for f in a.model_flags if f not in FIXED_FLAGS)}, "
          f"vocabulary {a.vocab_size}\n"
          f"{a.repeats} repeats x (nanoGPT, ours), {a.warmup} warm-up + {a.steps} measured steps each, "
          f"OMP_NUM_THREADS={a.threads}\nper run: median step time (ms) over the measured steps (all), and over the "
          f"clean ones (n: how many); ratio = ours / nanoGPT", flush=True)
    print(f"{'rep':>3} | {'nanoGPT':>8} {'ours':>8} {'ratio':>6} | {'nanoGPT clean':>13} {'ours clean':>13} "
          f"{'ratio':>6} | {'loop ratio (clean)':>6}", flush=True)
    def timeout():
        if a.max_time is None:
            return a.timeout
        return max(1.0, min(a.timeout, a.max_time - (time.monotonic() - t_start)))

    results, stopped = [], None
    r, last_pair = 0, 0.0
    while True:
        n_valid = sum(x['valid'] for x in results)
        if r >= a.repeats and (n_valid >= a.repeats or r >= a.repeats + a.extra_pairs):
            break
        elapsed = time.monotonic() - t_start
        if r > 0 and a.max_time is not None and elapsed + last_pair > a.max_time:
            stopped = (f"--max_time={a.max_time:g}: {r} pair(s) in {elapsed:.0f} s, another would take about "
                       f"{last_pair:.0f} s more")
            print(f"stopping early, {stopped}", flush=True)
            break
        t_pair = time.monotonic()
        try:
            waited = wait_quiet(a)
            ng = run_nanogpt(a, env, timeout())
            waited += wait_quiet(a)
            us = run_ours(a, env, timeout())
        except OutOfTime as e:
            stopped = f"pair {r + 1} not finished: {e}"
            print(f"stopping early, {stopped}", flush=True)
            break
        last_pair = time.monotonic() - t_pair
        if waited > 10:  # 6 s is the minimum: 3 one-second samples before each run
            print(f"    (waited {waited:.0f} s for other work on the machine to finish)", flush=True)
        results.append({'repeat': r, 'nanogpt': ng, 'ours': us, 'ratio_self': us['self_med'] / ng['self_med'],
                        'ratio_loop': us['loop_med'] / ng['loop_med']})
        evaluate(results, a)
        print(row(results[-1]), flush=True)
        if r == 0 and us['threads_reported'] not in (None, str(a.threads)):
            print(f"warning: ours reports torch threads {us['threads_reported']}", flush=True)
        write_json(a, results, stopped)
        r += 1

    write_json(a, results, stopped)
    if not results:
        print("no pair finished", flush=True)
        return
    floor, limit = evaluate(results, a)
    print(f"\nfinal, with the floor over all runs = {floor:.1f} ms (clean: step <= {limit:.1f} ms):")
    for x in results:
        print(row(x))
    valid = [x for x in results if x['valid']]
    print(f"\nsummary over all {len(results)} pairs: median [min - max]")
    print(f"  nanoGPT step (ms): {spread([x['nanogpt']['self_med'] for x in results])}")
    print(f"  ours    step (ms): {spread([x['ours']['self_med'] for x in results])}")
    print(f"  ratio ours/nanoGPT: {spread([x['ratio_self'] for x in results])}")
    print(f"  ratio ours/nanoGPT, loop (stdout line interval): {spread([x['ratio_loop'] for x in results])}")
    print(f"summary over the {len(valid)} uncontended pairs, clean steps only: median [min - max]")
    print(f"  nanoGPT step (ms): {spread([x['nanogpt']['clean_med'] for x in valid])}")
    print(f"  ours    step (ms): {spread([x['ours']['clean_med'] for x in valid])}")
    print(f"  ratio ours/nanoGPT: {spread([x['ratio_clean'] for x in valid])}")
    print(f"  ratio ours/nanoGPT, loop (stdout line interval): {spread([x['ratio_clean_loop'] for x in valid])}")


if __name__ == '__main__':
    main()
