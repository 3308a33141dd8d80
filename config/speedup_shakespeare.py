# The quick LET check on a CPU: byte-level Shakespeare, a teacher trained here first, then the plain baseline
# (tuned over a learning-rate grid), LET, SALT and RKD, from the same initialisation on the same batches.
# $ python speedup.py config/speedup_shakespeare.py
# Every run is a training config of its own: the baseline is train_shakespeare_byte.py (the settings shared by
# all runs), the teacher teacher_shakespeare.py, the variants let_, salt_ and rkd_shakespeare.py. Here they are
# read as the settings each changes in the baseline, so --max_iters=100 on the command line shortens every run.
import os
from configurator import changes as _changes
_here = os.path.dirname(os.path.abspath(__file__))
_baseline = os.path.join(_here, 'train_shakespeare_byte.py')
exec(open(_baseline).read())
speedup_dir = 'out-speedup-shakespeare'

# the teacher: trained first into out-shakespeare-teacher/ (skipped when its checkpoint exists with these settings)
teacher = 'out-shakespeare-teacher/ckpt.pt'
teacher_train = _changes(os.path.join(_here, 'teacher_shakespeare.py'), _baseline)

# the runs compared with the baseline (teacher=''), each a set of overrides on top of the baseline's settings:
# LET and the paper's two distillation baselines from the same teacher. Each is what its training config changes
# in the baseline, less the teacher it names: that is `teacher` above, set here for every run, so that another
# one (--teacher=... on the command line, or here) is every variant's too
variants = {name: {k: v for k, v in _changes(os.path.join(_here, f'{name}_shakespeare.py'), _baseline).items()
                   if k != 'teacher'} for name in ('let', 'salt', 'rkd')}

# the baseline's learning rate is tuned on the same budget: each of these, on every seed; the best (lowest mean
# final val loss) sets the target and the variants run at it. A factor-2 grid around 3e-3: at 400 steps (an
# earlier schedule) 2e-3 and 4e-3 tied and 1e-3 and 8e-3 were worse (docs/speedup.md)
lr_grid = (1.5e-3, 3e-3, 6e-3)
seeds = (1337, 1338, 1339)
jobs = 0                           # one run per CPU core, one thread each: more steps per second than
                                   # one run on all cores, and the same results on any machine
