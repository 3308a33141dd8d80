# The teacher of the CPU demo: the demo's data and schedule (config/train_shakespeare_byte.py), a model 1/5 of
# the student's size, trained 5x longer ("late" in its training).
# $ python train.py config/teacher_shakespeare.py          (under a minute on a 2-core CPU)
# speedup.py config/speedup_shakespeare.py trains exactly this into the same folder when it is missing.
import os
exec(open(os.path.join(os.path.dirname(__file__), 'train_shakespeare_byte.py')).read())
out_dir = 'out-shakespeare-teacher'
n_layer = 2                        # 2 blocks x 64 wide: 0.12M parameters
n_embd = 64
max_iters = 1250                   # 1.3M tokens, 5x the student's
lr_decay_iters = 1250
eval_interval = 250
