# SALT on the CPU (the paper's first distillation baseline; Rawat et al. 2024): the demo's student
# (config/train_shakespeare_byte.py) learns from the demo teacher's next-token distribution in an early phase
# that ends where LET's S_stop does, then trains plain.
# $ python train.py config/teacher_shakespeare.py && python train.py config/salt_shakespeare.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'train_shakespeare_byte.py')).read())
out_dir = 'out-shakespeare-salt'

teacher = 'out-shakespeare-teacher/ckpt.pt'
let_lambda = 0.0       # no alignment: distillation only
kd_lambda = 20.0       # w0: the best of 0.5, 1, 2, 5, 20, 100 (seed 1337, 400 steps; docs/speedup.md)
kd_stop = 125          # the weight falls linearly to 0 here: LET's S_stop, the same early phase
kd_temperature = 1.0   # tau = 1: the teacher's own distribution
