"""
speedup.py's numbers and its report: the arithmetic on validation curves (steps to the target, speedups, gaps),
their statistics over seeds, and the console tables, report.md and plots that say them. It only reads what the
runs left (eval records, configs, the teacher's checkpoint), so the arithmetic can be tested on made-up curves.
Curves are lists of (step, value) sorted by step.
"""

import math
import os
import platform
import time

import torch

from components.checkpoint import load_checkpoint, read_log
from components.runtime import describe_machine, resolve_device
from configurator import ConfigError, model_config
from data.common import check_dataset, resolve_data_dir
from model import GPT, padded_vocab
from teacher import check_teacher, load_teacher

FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # where the val-loss gap is reported, as fractions of the baseline's steps


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
    out['load'] = load_changed(out)
    return out


LOAD_TOLERANCE = 0.1  # the control (step time after S_stop, identical work) may read 0.9x-1.1x of the baseline's


def load_changed(r):
    """Why a seed's wall-clock speedup measures the machine's load rather than the method, or None. Runs that
    share a machine with other work meet it at different moments: the control (identical work after S_stop) then
    reads far from 1x, or a variant whose steps also run a teacher gains more in time than in steps."""
    control = r['plain_step_ratio']
    if control is not None and abs(control - 1) > LOAD_TOLERANCE:
        return f"the same work after S_stop took {control:.2f}x the baseline's time"
    if r['teacher_step_ratio'] is not None and (r['time_speedup'] or 0) > (r['step_speedup'] or math.inf):
        return "a larger speedup in time than in steps, though every step up to S_stop also runs the teacher"
    return None


def uses_teacher(run_cfg):
    """Whether the run's teacher is used: with both weights at 0 train.py never loads it (plain training)."""
    return bool(run_cfg.teacher) and (run_cfg.let_lambda > 0 or run_cfg.kd_lambda > 0)


def teacher_steps(run_cfg):
    """The steps during which the run's teacher runs (S_stop, SALT's stop, all of them for RKD), or None."""
    if not uses_teacher(run_cfg):
        return None
    let_steps = run_cfg.let_stop if run_cfg.let_lambda > 0 else 0
    kd_steps = (run_cfg.kd_stop or run_cfg.max_iters) if run_cfg.kd_lambda > 0 else 0
    return min(run_cfg.max_iters, max(let_steps, kd_steps))


def best_rate(runs, name, seeds):
    """The learning rate of run `name` with the lowest mean final val loss over the seeds: the one it is reported
    at. runs: {(seed, name, learning rate): (TrainConfig, eval records, how)}, as the functions below take them."""
    lrs = sorted({lr for (_, n, lr) in runs if n == name})
    return min(lrs, key=lambda lr: sum(runs[(seed, name, lr)][1][-1]['val_loss'] for seed in seeds) / len(seeds))


def at_best(runs, best_lr, seeds):
    """{(seed, name): (TrainConfig, eval records, how)} of the runs compared: each at its chosen learning rate."""
    return {(seed, name): runs[(seed, name, lr)] for name, lr in best_lr.items() for seed in seeds}


def speedups(runs, best_lr, seeds, teacher_time):
    """{variant: [compare() of each seed]} at the chosen learning rates. A variant that uses the teacher is also
    charged its training time, teacher_time (None: unknown)."""
    chosen = at_best(runs, best_lr, seeds)
    return {name: [compare(chosen[(seed, 'baseline')][1], chosen[(seed, name)][1],
                           teacher_time if uses_teacher(chosen[(seed, name)][0]) else None,
                           teacher_steps(chosen[(seed, name)][0])) for seed in seeds]
            for name in best_lr if name != 'baseline'}


def teacher_ckpt(cfg):
    """The checkpoint file `teacher` names: itself (a .pt), or a folder's ckpt.pt."""
    return cfg.teacher if cfg.teacher.endswith('.pt') else os.path.join(cfg.teacher, 'ckpt.pt')


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
              'wall-clock speedup', 'final gap', 'load']
    f = lambda v, fmt, missing='not reached': missing if v is None else fmt.format(v)
    rows = [[name, seed, f(r['target'], '{:.4f}'), f(r['base_steps'], '{:.0f}'), f(r['steps'], '{:.0f}'),
             f(r['step_speedup'], '{:.2f}x'), f(r['base_time'], '{:.1f}s'), f(r['time'], '{:.1f}s'),
             f(r['time_speedup'], '{:.2f}x'), f(r['final_gap'], '{:+.4f}'), r['load'] or '']
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
    loaded = [r['load'] for r in per_seed if r['load']]
    if loaded or (mean('time_speedup') > mean('step_speedup') and per_seed[0]['teacher_step_ratio'] is not None):
        text += (f" [the wall-clock figure measures the machine's load, not the method: "
                 f"{loaded[0] if loaded else 'more speedup in time than in steps'}"
                 f"{f' (in {len(loaded)} of {n} seeds)' if n > 1 and loaded else ''}]")
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
    ax.axhline(sum(targets) / len(targets), color='gray', linestyle='--', linewidth=1,
               label="baseline's final val loss")
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


def teacher_layer(run_cfg):
    """The teacher's side of the layer pairing, in words (the paper's ablation pairs final or middle with early,
    middle or late); settings saved before let_teacher_layer existed mean the final layer."""
    j = getattr(run_cfg, 'let_teacher_layer', -1)
    return "the teacher's final layer (after its final norm)" if j == -1 else f"the teacher's block {j} (from 0)"


def let_settings(run_cfg):
    """The run's use of a teacher, in words: LET's settings, the distillation's, or none."""
    parts = [f"learning rate {run_cfg.learning_rate:g}"]
    if uses_teacher(run_cfg):
        parts.append(f"teacher {run_cfg.teacher}")
    if uses_teacher(run_cfg) and run_cfg.let_lambda > 0:
        parts.append(f"LET: lambda0 {run_cfg.let_lambda:g}, S_stop {run_cfg.let_stop}, block(s) "
                     f"k={list(run_cfg.let_layers)} (from 0) aligned with {teacher_layer(run_cfg)}, projector "
                     f"{run_cfg.let_proj}, loss {run_cfg.let_loss}")
    if uses_teacher(run_cfg) and run_cfg.kd_lambda > 0:
        kind = "RKD, constant"
        if run_cfg.kd_stop and run_cfg.kd_schedule == 'step':
            kind = f"SALT, full weight until step {run_cfg.kd_stop}, then off"
        elif run_cfg.kd_stop:
            kind = f"SALT-style, weight falling linearly to 0 at step {run_cfg.kd_stop}"
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


def group_rows(members):
    """[(row label, variant name)] of one of speedup.py's groups: a tuple of names, or {label: name}."""
    return list(members.items()) if isinstance(members, dict) else [(name, name) for name in members]


def group_sections(cfg, results, curves, targets, stops, charged):
    """For each of cfg.groups (speedup.py: one ablation each): its table (the baseline's row, then its variants')
    and its plot, ablation_<group>.png; returns the report's lines. A group's training time is the sum of
    train_time over its variants' runs (all seeds; a run in two groups counts in both)."""
    md = []
    for group, members in cfg.groups.items():
        rows = group_rows(members)
        text = speedup_table({label: results[name] for label, name in rows}, charged)
        seconds = sum(c[-1]['train_time'] for _, name in rows for c in curves[name])
        plot = f'ablation_{group}.png'
        plot_curves({'baseline': curves['baseline'], **{label: curves[name] for label, name in rows}}, 'iter',
                    os.path.join(cfg.speedup_dir, plot), f'{group}: validation loss vs steps',
                    targets, {label: stops[name] for label, name in rows})
        print(f"\n{group}\n{text}")
        md += [f'### {group}', '', text, '',
               f"{len(rows)} variant(s) x {len(cfg.seeds)} seed(s); their training time: {seconds:.0f} s in all "
               f"(train_time summed over the runs).", '', f'![{group}]({plot})', '']
    return ['## Ablations', '', *md] if md else []


def write_report(cfg, command, runs, best_lr, results, teacher, total_time):
    """Console table, report.md and the two plots in speedup_dir. runs and best_lr: every run trained and the
    learning rate each is reported at (see best_rate); results: speedups()."""
    seeds = list(cfg.seeds)
    chosen = at_best(runs, best_lr, seeds)
    configs = {key: run_cfg for key, (run_cfg, _, _) in chosen.items()}
    base_cfg = configs[(seeds[0], 'baseline')]
    charged = any(r['time_speedup_with_teacher'] is not None for per_seed in results.values() for r in per_seed)
    ran_at = {name: configs[(seeds[0], name)].learning_rate for name in best_lr}  # a variant's own one included
    grids = {name: {runs[(seeds[0], name, lr)][0].learning_rate: [runs[(s, name, lr)][1][-1]['val_loss'] for s in seeds]
                    for lr in sorted({lr for (_, n, lr) in runs if n == name})}
             for name in best_lr}  # {name: {learning rate: final val loss per seed}}
    curves = {name: [chosen[(s, name)][1] for s in seeds] for name in best_lr}
    targets = [r['target'] for r in next(iter(results.values()))]
    stops = {name: teacher_steps(configs[(seeds[0], name)]) for name in cfg.variants}
    plot_curves(curves, 'iter', os.path.join(cfg.speedup_dir, 'val_loss_vs_steps.png'),
                'validation loss vs steps (dotted: the teacher stops)', targets, stops)
    plot_curves(curves, 'train_time', os.path.join(cfg.speedup_dir, 'val_loss_vs_time.png'),
                'validation loss vs training time', targets, stops)

    target = target_line(cfg, ran_at, grids)
    summary = speedup_table(results, charged) + '\n\n' + gap_table(results)
    lines = [headline(name, per_seed) for name, per_seed in results.items()]
    lr_table = grid_table(grids, ran_at, seeds)
    print('\n' + lr_table + '\n\n' + summary + '\n\n' + target + '\n' + '\n'.join(lines))

    tokens_per_iter = base_cfg.batch_size * base_cfg.gradient_accumulation_steps * base_cfg.block_size
    arch = (f"{base_cfg.n_layer} blocks x {base_cfg.n_embd} ({base_cfg.n_head} heads), {base_cfg.norm}, "
            f"{base_cfg.mlp}, {base_cfg.pos} positions, bias {base_cfg.bias}")
    teacher_line = f"`{teacher['spec']}`, {teacher['how']}" + (f": {teacher['shape']}" if teacher['shape'] else '')
    if teacher['train_time'] is not None:
        teacher_line += (f", {teacher['iters']} steps, training time {teacher['train_time']:.1f} s (its log), "
                         f"final val loss {teacher['val_loss']:.4f}")
    reused = [f"seed{s}/{n}" for (s, n), (_, _, how) in chosen.items() if how != 'trained']
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
           *group_sections(cfg, results, curves, targets, stops, charged), '## Learning rates', '', lr_table, '']
    if len(seeds) > 1 or any(r['steps'] is None for per_seed in results.values() for r in per_seed):
        md += ['## Per seed', '', seed_table(results, seeds), '']
    md += ['![val loss vs steps](val_loss_vs_steps.png)', '', '![val loss vs training time](val_loss_vs_time.png)', '']
    path = os.path.join(cfg.speedup_dir, 'report.md')
    with open(path, 'w') as f:
        f.write('\n'.join(md))
    print(f"\nreport: {path}")
    return path
