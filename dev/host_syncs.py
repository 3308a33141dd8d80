"""How often each training step of train.py waits for the device: train.py runs in this process with every
Python-level way of waiting counted, and the counts are split at each optimizer step.

    python -m dev.host_syncs config/let_smollm2_gpu.py --max_iters=20 --compile=False [--json=PATH]

A step that waits for the device idles the GPU while the host catches up, so a step that does not log should wait
zero times. Counted, on tensors of the run's device (a CPU run: CPU tensors, standing in for the device):
Tensor.item, .tolist, .__bool__ (`if t:`), .__float__, .__int__, .numpy, .cpu (a copy to the host needs the
value), and torch.cuda.synchronize with Event.synchronize and Stream.synchronize. Syncs inside torch's C++ are
invisible to these; on CUDA, torch.cuda.set_sync_debug_mode('warn') reports them as warnings, counted per step
the same way (sync_warnings).

A global optimizer step post-hook notes the running counts at every optimizer step; step s's counts are what
happened after step s-1's optimizer step up to its own. That window holds step s-1's logging (train.py logs after
a step, as iteration s), the evaluation at iteration s, the teacher's release when S_stop is s, and step s's own
work. So `logged` is s % log_interval == 0, `evaluated` s % eval_interval == 0 (train.py's settings), and
`released` marks the step whose window holds Teacher.release (once a run: train.py stops its clock there, which
on CUDA waits for the device, and the release returns the teacher's memory); every other step should count 0.
What follows the last optimizer step (the final log, evaluation and checkpoint) is no step's: it is printed as the
tail. Steps are numbered from 0: run it fresh (init_from='scratch' or a new out_dir), not as a resume.

Prints a table, and the JSON list of {step, syncs, logged, evaluated, released, calls: {"<call> <file:line>": n}}
(with sync_warnings on CUDA) to --json=PATH, or to stdout without it.
"""

import collections
import json
import os
import runpy
import sys
import warnings
from contextlib import contextmanager

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # train.py imports its siblings; runpy.run_path does not add its folder

TENSOR_CALLS = ('item', 'tolist', '__bool__', '__float__', '__int__', 'numpy', 'cpu')
SYNC_WARNING = 'synchroniz'  # in torch's "called a synchronizing CUDA operation"


def where(frame):
    """file:line of a frame, relative to the repository, or from the package folder for library code."""
    path = frame.f_code.co_filename
    if path.startswith(REPO + os.sep):
        path = os.path.relpath(path, REPO)
    elif 'site-packages' + os.sep in path:
        path = path.split('site-packages' + os.sep, 1)[1]
    return f"{path}:{frame.f_lineno}"


class Recorder:
    """The calls that can wait, in order, and where the optimizer steps fell among them."""

    def __init__(self):
        self.events = []  # (device type, or None for a synchronize call; call; file:line)
        self.warned = []  # file:line of each sync warning (CUDA)
        self.marks = []  # (len(events), len(warned)) at each optimizer step
        self.releases = []  # len(marks) at each release of the teacher: the step whose window holds it
        self.device_type = None  # the optimizer's parameters' device: the run's
        self.cuda_warnings = False  # whether torch's sync-debug warnings are counted

    def note(self, call, tensor, depth=2):
        if torch.compiler.is_compiling():
            return  # tracing: no value is read
        device = tensor.device.type if tensor is not None else None
        if call == 'cpu' and device == 'cpu':
            return  # no copy at all
        self.events.append((device, call, where(sys._getframe(depth))))

    def step_hook(self, optimizer, args, kwargs):
        if self.device_type is None:
            self.device_type = optimizer.param_groups[0]['params'][0].device.type
        self.marks.append((len(self.events), len(self.warned)))

    def counts(self, event):
        device, _, _ = event
        return device is None or device == self.device_type

    def window(self, start, end):
        """The counted calls among events[start:end], as {"<call> <file:line>": n}."""
        return collections.Counter(f"{call} {at}" for device, call, at in self.events[start:end]
                                   if self.counts((device, call, at)))


def _counting(rec, call, original, tensor_method):
    def counted(*args, **kwargs):
        rec.note(call, args[0] if tensor_method and args else None)
        return original(*args, **kwargs)
    counted.__name__ = getattr(original, '__name__', call)
    return counted


@contextmanager
def recording(cuda_warnings=None):
    """Counts every call that can wait for the device while inside; restores everything after. cuda_warnings: also
    count torch's sync-debug warnings (default: when CUDA is available)."""
    from teacher import Teacher
    rec = Recorder()
    patched = [(torch.Tensor, name, True) for name in TENSOR_CALLS]
    patched += [(torch.cuda, 'synchronize', False), (torch.cuda.Event, 'synchronize', False),
                (torch.cuda.Stream, 'synchronize', False)]
    saved = []
    for owner, name, tensor_method in patched:
        own = name in vars(owner)  # Tensor's methods are inherited from the C base class: deleted again after
        saved.append((owner, name, own, vars(owner).get(name)))
        label = name if owner is torch.Tensor else f"{owner.__name__}.{name}"
        setattr(owner, name, _counting(rec, label, getattr(owner, name), tensor_method))
    release = vars(Teacher)['release']

    def noted_release(teacher):
        rec.releases.append(len(rec.marks))
        return release(teacher)
    Teacher.release = noted_release
    handle = register_optimizer_step_post_hook(rec.step_hook)
    rec.cuda_warnings = cuda_warnings = torch.cuda.is_available() if cuda_warnings is None else cuda_warnings
    show = warnings.showwarning
    with warnings.catch_warnings():
        if cuda_warnings:
            warnings.filterwarnings('always', message=f'.*{SYNC_WARNING}')  # every one, not once per place

            def count_sync_warnings(message, category, filename, lineno, file=None, line=None):
                if SYNC_WARNING in str(message):
                    rec.warned.append(f"{filename}:{lineno}")
                else:
                    show(message, category, filename, lineno, file, line)
            warnings.showwarning = count_sync_warnings
            torch.cuda.set_sync_debug_mode('warn')
        try:
            yield rec
        finally:
            if cuda_warnings:
                torch.cuda.set_sync_debug_mode('default')
                warnings.showwarning = show
            handle.remove()
            Teacher.release = release
            for owner, name, own, original in saved:
                if own:
                    setattr(owner, name, original)
                else:
                    delattr(owner, name)


def per_step(rec, log_interval, eval_interval):
    """One record per optimizer step (see the module's docstring), and the tail after the last one."""
    steps, start, start_w = [], 0, 0
    for s, (end, end_w) in enumerate(rec.marks):
        calls = rec.window(start, end)
        record = {'step': s, 'syncs': sum(calls.values()), 'logged': s % log_interval == 0,
                  'evaluated': s % eval_interval == 0, 'released': s in rec.releases, 'calls': dict(calls)}
        if rec.cuda_warnings:
            record['sync_warnings'] = end_w - start_w
        steps.append(record)
        start, start_w = end, end_w
    tail = rec.window(start, len(rec.events))
    return steps, {'syncs': sum(tail.values()), 'calls': dict(tail), 'sync_warnings': len(rec.warned) - start_w}


class RunFailed(RuntimeError):
    pass


def count_syncs(train_args, cuda_warnings=None):
    """Runs `python train.py *train_args` in this process, counting; returns (steps, tail, device type)."""
    from configurator import TrainConfig, load_config
    cfg = load_config(TrainConfig, train_args)  # the intervals train.py will read (its own errors come below)
    train_py = os.path.join(REPO, 'train.py')
    argv = sys.argv
    sys.argv = [train_py, *train_args]
    try:
        with recording(cuda_warnings) as rec:
            runpy.run_path(train_py, run_name='__main__')
    except SystemExit as e:
        if e.code not in (0, None):
            raise RunFailed(f"train.py stopped with exit status {e.code}") from None
    finally:
        sys.argv = argv
    steps, tail = per_step(rec, cfg.log_interval, cfg.eval_interval)
    return steps, tail, rec.device_type


def quiet(record):
    """A step that should not wait for the device: it neither logs, evaluates nor releases the teacher."""
    return not (record['logged'] or record['evaluated'] or record.get('released'))


def describe(steps, tail, device_type):
    """The table: a line per step, then what the quiet steps (neither log, evaluate nor release) did."""
    lines = [f"host syncs per optimizer step ({device_type}): step, syncs, logs/evaluates/releases the teacher, "
             f"where"]
    for r in steps:
        kind = '+'.join(k for k, on in (('log', r['logged']), ('eval', r['evaluated']),
                                        ('release', r.get('released'))) if on)
        warned = f", {r['sync_warnings']} sync warnings" if r.get('sync_warnings') else ''
        where_ = ', '.join(f"{k} x{n}" for k, n in r['calls'].items())
        lines.append(f"  {r['step']:>5} {r['syncs']:>4} {kind or '-':<14} {where_}{warned}")
    lines.append(f"  after the last step: {tail['syncs']} syncs (the final log, evaluation and checkpoint)")
    rest = [r for r in steps if quiet(r)]
    waiting = [r for r in rest if r['syncs'] or r.get('sync_warnings')]
    lines.append(f"steps that neither log, evaluate nor release the teacher: {len(rest)}, of which {len(waiting)} "
                 f"wait for the device (target: 0)")
    return '\n'.join(lines)


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    out = next((a.split('=', 1)[1] for a in args if a.startswith('--json=')), None)
    train_args = [a for a in args if not a.startswith('--json=')]
    from configurator import exit_on_error
    steps, tail, device_type = exit_on_error(count_syncs, train_args, failed=(RunFailed,))
    print(describe(steps, tail, device_type), flush=True)
    if out:
        with open(out, 'w') as f:
            json.dump(steps, f, indent=1)
    else:
        print(json.dumps(steps))
    return steps


if __name__ == '__main__':
    main()
