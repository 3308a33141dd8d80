#!/usr/bin/env python
"""
Step time side by side: nanoGPT's train.py against this repository's train.py, the same model on the CPU.

    git clone https://github.com/karpathy/nanoGPT /tmp/nanoGPT      (any checkout; 3adf61e was measured)
    python bench_nanogpt.py --nanogpt=/tmp/nanoGPT/train.py --repeats=10

Both run as subprocesses, interleaved (nanoGPT, ours, nanoGPT, ours, ...) for --repeats pairs, on the byte-level
Shakespeare of this repository (python data/shakespeare/prepare.py --tokenizer=byte; linked into the nanoGPT
checkout as data/shakebyte/). Each run does --warmup + --steps training steps; the first --warmup are dropped
and the median of the rest is that run's step time. Every pair gives one ratio ours / nanoGPT; the summary is
the median and min-max of those ratios. No asserts: a ratio measured side by side, with its spread.

Two measures per run:
  self   the trainer's own per-step time. nanoGPT: the 'time ...ms' it prints, which spans one whole loop
         iteration (including its logging and the next batch read). ours: 'dt_ms' of the 'train' records in
         out_dir/log.jsonl (lr, data, forward/backward, optimizer step; not the logging after it).
  loop   the interval between consecutive 'iter N:' lines on the trainer's stdout, stamped here as they arrive
         (PYTHONUNBUFFERED=1): the same definition on both sides, one whole loop iteration each.

Setting (both): GPT-2 flavour, n_layer=4, n_head=4, n_embd=192, block_size=128, batch_size=16, accumulation 1,
dropout 0, bias, fp32, cpu, no compile, OMP_NUM_THREADS=2 (and MKL_NUM_THREADS=2), byte vocabulary of 256.
Steps several times slower than the fastest (other work on the machine) are set aside as 'contended'.
"""

import argparse
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

REPO_DIR = os.path.dirname(os.path.abspath(__file__))

MODEL_FLAGS = ['--device=cpu', '--compile=False', '--dtype=float32', '--bias=True', '--dropout=0.0',
               '--n_layer=4', '--n_head=4', '--n_embd=192', '--block_size=128', '--batch_size=16',
               '--gradient_accumulation_steps=1', '--eval_interval=100000', '--eval_iters=1', '--log_interval=1']

ITER_LINE = re.compile(r'^iter (\d+): .*?time ([0-9.]+)ms')


def ensure_nanogpt_dataset(nanogpt_dir, name, src_dir):
    """data/<name>/ in the nanoGPT clone: symlinks to our train.bin/val.bin and meta.pkl {'vocab_size': 256}."""
    d = os.path.join(nanogpt_dir, 'data', name)
    os.makedirs(d, exist_ok=True)
    for split in ('train', 'val'):
        dst = os.path.join(d, f'{split}.bin')
        if not os.path.exists(dst):
            src = os.path.join(src_dir, f'{split}.bin')
            if not os.path.isfile(src):
                sys.exit(f"{src} is missing: prepare it with python data/shakespeare/prepare.py --tokenizer=byte "
                         f"or pass --data_src")
            os.symlink(os.path.abspath(src), dst)
    meta = os.path.join(d, 'meta.pkl')
    if not os.path.exists(meta):
        with open(meta, 'wb') as f:
            pickle.dump({'vocab_size': 256}, f)


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


def run_proc(cmd, cwd, env, timeout):
    """Runs cmd; returns (rc, stdout lines, arrival time of each line (perf_counter), stderr text)."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    err = []
    t_err = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
    t_err.start()
    lines, stamps = [], []
    deadline = time.monotonic() + timeout
    for line in p.stdout:
        stamps.append(time.perf_counter())
        lines.append(line.rstrip('\n'))
        if time.monotonic() > deadline:
            p.kill()
            break
    try:
        rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    t_err.join(timeout=5)
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
    sys.exit(f"{label} run failed (rc {rc}).\n--- stdout tail ---\n{tail}\n--- stderr tail ---\n{err[-3000:]}")


def run_nanogpt(a, env):
    cwd = os.path.dirname(os.path.abspath(a.nanogpt))
    out_dir = tempfile.mkdtemp(prefix='cmp_nanogpt_')
    # nanoGPT runs iterations 0..max_iters inclusive; iteration 0 includes its first evaluation
    cmd = [sys.executable, os.path.abspath(a.nanogpt), f'--dataset={a.nanogpt_dataset}', *MODEL_FLAGS,
           f'--max_iters={a.warmup + a.steps - 1}', '--always_save_checkpoint=False', f'--out_dir={out_dir}',
           *a.nanogpt_extra]
    try:
        rc, lines, stamps, err = run_proc(cmd, cwd, env, a.timeout)
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


def run_ours(a, env):
    cwd = os.path.dirname(os.path.abspath(a.ours))
    parent = tempfile.mkdtemp(prefix='cmp_ours_')
    out_dir = os.path.join(parent, 'out')  # fresh and absent: init_from=scratch never meets a checkpoint
    cmd = [sys.executable, os.path.abspath(a.ours), f'--dataset={a.ours_dataset}', *MODEL_FLAGS,
           f'--max_iters={a.warmup + a.steps}', '--progress=False', '--init_from=scratch', f'--out_dir={out_dir}',
           *a.ours_extra]
    try:
        rc, lines, stamps, err = run_proc(cmd, cwd, env, a.timeout)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nanogpt', required=True, help="nanoGPT's train.py, in a checkout of karpathy/nanoGPT")
    ap.add_argument('--ours', default=os.path.join(REPO_DIR, 'train.py'), help="our train.py (run in its folder)")
    ap.add_argument('--repeats', type=int, default=8, help="pairs (nanoGPT, ours) to run")
    ap.add_argument('--warmup', type=int, default=10)
    ap.add_argument('--steps', type=int, default=30)
    ap.add_argument('--threads', type=int, default=2, help="OMP_NUM_THREADS / MKL_NUM_THREADS for both")
    ap.add_argument('--ours_dataset', default='shakespeare/byte')
    ap.add_argument('--nanogpt_dataset', default='shakebyte')
    ap.add_argument('--data_src', default=None,
                    help="folder with train.bin/val.bin for nanoGPT's dataset (default: <ours dir>/data/<ours_dataset>)")
    ap.add_argument('--ours_extra', nargs='*', default=[], help="more --key=value flags for ours")
    ap.add_argument('--nanogpt_extra', nargs='*', default=[], help="more --key=value flags for nanoGPT")
    ap.add_argument('--clean_factor', type=float, default=1.5,
                    help="a step is clean when at most this x the floor (lowest run 10th percentile)")
    ap.add_argument('--min_clean', type=float, default=0.5, help="fraction of clean steps a run needs to count")
    ap.add_argument('--extra_pairs', type=int, default=0,
                    help="run up to this many more pairs while fewer than --repeats pairs are uncontended")
    ap.add_argument('--quiet_busy', type=float, default=0.1,
                    help="before each run, wait until the CPUs are at most this busy (1 = never wait)")
    ap.add_argument('--max_wait', type=float, default=300, help="longest wait for quiet before a run, seconds")
    ap.add_argument('--timeout', type=float, default=900, help="seconds per run")
    ap.add_argument('--json', default=None, help="write every run's step times here")
    a = ap.parse_args()

    ours_dir = os.path.dirname(os.path.abspath(a.ours))
    ensure_nanogpt_dataset(os.path.dirname(os.path.abspath(a.nanogpt)), a.nanogpt_dataset,
                           a.data_src or os.path.join(ours_dir, 'data', a.ours_dataset))
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads), PYTHONUNBUFFERED='1')
    env.pop('RANK', None)  # never DDP

    print(f"ours: {os.path.abspath(a.ours)}\nnanoGPT: {os.path.abspath(a.nanogpt)}\n"
          f"{a.repeats} repeats x (nanoGPT, ours), {a.warmup} warm-up + {a.steps} measured steps each, "
          f"OMP_NUM_THREADS={a.threads}\nper run: median step time (ms) over the measured steps (all), and over the "
          f"clean ones (n: how many); ratio = ours / nanoGPT", flush=True)
    print(f"{'rep':>3} | {'nanoGPT':>8} {'ours':>8} {'ratio':>6} | {'nanoGPT clean':>13} {'ours clean':>13} "
          f"{'ratio':>6} | {'loop ratio (clean)':>6}", flush=True)
    results = []
    r = 0
    while True:
        n_valid = sum(x['valid'] for x in results)
        if r >= a.repeats and (n_valid >= a.repeats or r >= a.repeats + a.extra_pairs):
            break
        waited = wait_quiet(a)
        ng = run_nanogpt(a, env)
        waited += wait_quiet(a)
        us = run_ours(a, env)
        if waited > 10:  # 6 s is the minimum: 3 one-second samples before each run
            print(f"    (waited {waited:.0f} s for other work on the machine to finish)", flush=True)
        results.append({'repeat': r, 'nanogpt': ng, 'ours': us, 'ratio_self': us['self_med'] / ng['self_med'],
                        'ratio_loop': us['loop_med'] / ng['loop_med']})
        evaluate(results, a)
        print(row(results[-1]), flush=True)
        if r == 0 and us['threads_reported'] not in (None, str(a.threads)):
            print(f"warning: ours reports torch threads {us['threads_reported']}", flush=True)
        r += 1

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
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'args': vars(a), 'floor_ms': floor, 'results': results}, f, indent=1)


if __name__ == '__main__':
    main()
