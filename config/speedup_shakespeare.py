# The quick LET check on a CPU: byte-level Shakespeare, a teacher trained here first, then the plain baseline
# and LET from the same initialisation on the same batches.
# $ python speedup.py config/speedup_shakespeare.py          (about 9 minutes on a 2-core CPU, teacher included)
# Every run is a training config of its own: the baseline is train_shakespeare_byte.py (the settings shared by
# all runs), the teacher teacher_shakespeare.py, LET let_shakespeare.py. Here they are read as the settings
# each changes in the baseline, so --max_iters=100 on the command line still shortens every run.
import os
from configurator import changes as _changes
_here = os.path.dirname(os.path.abspath(__file__))
_baseline = os.path.join(_here, 'train_shakespeare_byte.py')
exec(open(_baseline).read())
speedup_dir = 'out-speedup-shakespeare'

# the teacher: trained first into out-shakespeare-teacher/ (skipped when its checkpoint exists with these settings)
teacher = 'out-shakespeare-teacher/ckpt.pt'
teacher_train = _changes(os.path.join(_here, 'teacher_shakespeare.py'), _baseline)

# the runs compared with the baseline (teacher=''), each a set of overrides on top of the baseline's settings
variants = {
    'let': _changes(os.path.join(_here, 'let_shakespeare.py'), _baseline),
}
seeds = (1337,)                    # more seeds give mean and spread: --seeds="(1337, 1338, 1339)"
