"""How dev/gpu_check.py runs its checks: each under a time limit carved from the budget (allot), their commands
ended, with all they started, at the check's deadline (Context.run), the run's status (overall), and the report as
JSON and a markdown table."""

import json
import os
import signal
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Skip(Exception):
    """The check cannot run here (nothing to compare with, an asset missing): skipped, with the reason."""


class TimedOut(Exception):
    """A command reached the check's deadline and was ended: the check is incomplete, not failed."""


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
    """What the checks share: the options, the output folders, and the commands' environment."""

    def __init__(self, a):
        self.cpu, self.out, self.nanogpt = a.cpu, os.path.abspath(a.out), a.nanogpt
        self.logs, self.runs = os.path.join(self.out, 'logs'), os.path.join(self.out, 'runs')
        os.makedirs(self.logs, exist_ok=True)
        self.env = dict(os.environ, PYTHONUNBUFFERED='1')
        self.env.pop('RANK', None)  # never inherit a process group
        # every command reads and writes torch's one on-disk inductor cache (its default folder, or
        # TORCHINDUCTOR_CACHE_DIR), so a graph one check compiled (the student's and the teacher's of
        # config/let_smollm2_gpu.py) is read back by the later ones; on, where a torch leaves the caches off
        for cache in ('TORCHINDUCTOR_FX_GRAPH_CACHE', 'TORCHINDUCTOR_AUTOGRAD_CACHE'):
            self.env.setdefault(cache, '1')
        if self.cpu:
            self.env.setdefault('OMP_NUM_THREADS', '1')  # tiny models: threads only contend

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


def row(figure, value, target, status):
    return {'figure': figure, 'value': value, 'target': target, 'status': status}


def judged(ok, cpu):
    """A timing target's status: judged on a GPU, reported only on a CPU."""
    return 'not judged (CPU)' if cpu else ('pass' if ok else 'fail')


def status_of(rows):
    """A check's status from its rows: one failure fails it."""
    return 'fail' if any(r['status'] == 'fail' for r in rows) else 'pass'


UNFINISHED = ('skipped', 'timed out')  # a check's status when it did not judge all it exists to judge
EXIT_STATUS = {'pass': 0, 'fail': 1, 'incomplete': 3}  # 2: a bad argument (argparse)


def overall(checks):
    """The run's status: 'fail' when a check failed, else 'incomplete' when one was skipped or timed out (its
    claim untested), else 'pass'."""
    if any(c['status'] == 'fail' for c in checks):
        return 'fail'
    return 'incomplete' if any(c['status'] in UNFINISHED for c in checks) else 'pass'


def summary(report):
    """The run's status in words: the status, and the checks that did not finish."""
    unfinished = [f"{c['title']} {c['status']}" for c in report['checks'] if c['status'] in UNFINISHED]
    return report['status'] + (f" ({'; '.join(unfinished)})" if unfinished else '')


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
    lines += ['', f"Overall: **{summary(report)}**. Figures: gpu_check.json (a check that did not finish keeps "
                  f"what it measured); commands' output: logs/."]
    return '\n'.join(lines) + '\n'


def write(report, out):
    """out/gpu_check.json and out/gpu_check.md, rewritten after each check so that a run cut short leaves both."""
    with open(os.path.join(out, 'gpu_check.json'), 'w') as f:
        json.dump(report, f, indent=1, default=str)
    with open(os.path.join(out, 'gpu_check.md'), 'w') as f:
        f.write(markdown(report))
