"""Runs a script (train.py) and kills its own process (SIGKILL) at a chosen moment of its progress, so that a
crash test lands where it means to on any machine, fast or slow:

    python tests/kill_at.py WHERE N SCRIPT [ARGS...]

WHERE is 'step' (inside the N-th optimizer step, after the update and before anything is logged or saved),
'mid_write' (the N-th checkpoint file half written to its .tmp) or 'before_rename' (the N-th checkpoint whole
in its .tmp, not yet renamed into place). Counted in this process only. Under torchrun only the rank named by
KILL_RANK dies, and only in the first attempt (a restarted worker runs to the end).
"""

import io
import os
import runpy
import signal
import sys

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

where, n, script = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.argv = sys.argv[3:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
armed = (os.environ.get('KILL_RANK', os.environ.get('RANK', '0')) == os.environ.get('RANK', '0')
         and os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') == '0')
seen = 0


def due():
    """True at the N-th event of its kind in this process."""
    global seen
    seen += 1
    return armed and seen == n


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def is_checkpoint(name):
    return str(name).endswith(('ckpt.pt', 'ckpt.pt.tmp'))


if where == 'step':
    register_optimizer_step_post_hook(lambda optimizer, args, kwargs: due() and die())
elif where == 'mid_write':
    save = torch.save

    def half_then_die(obj, f, *args, **kwargs):
        if not (is_checkpoint(getattr(f, 'name', f)) and due()):
            return save(obj, f, *args, **kwargs)
        whole = io.BytesIO()
        save(obj, whole, *args, **kwargs)
        f.write(whole.getvalue()[:whole.tell() // 2])
        f.flush()
        os.fsync(f.fileno())
        die()
    torch.save = half_then_die
elif where == 'before_rename':
    replace = os.replace

    def die_before(src, dst):
        if is_checkpoint(dst) and due():
            die()
        return replace(src, dst)
    os.replace = die_before
else:
    raise SystemExit(f"kill_at.py: WHERE={where!r}: use step, mid_write or before_rename")
runpy.run_path(script, run_name='__main__')
