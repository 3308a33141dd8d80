# RKD on the CPU ("reverse" distillation, the paper's second baseline): the demo's student
# (config/train_shakespeare_byte.py) learns from the smaller teacher's next-token distribution for the whole run.
# $ python train.py config/teacher_shakespeare.py && python train.py config/rkd_shakespeare.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'train_shakespeare_byte.py')).read())
out_dir = 'out-shakespeare-rkd'

teacher = 'out-shakespeare-teacher/ckpt.pt'
let_lambda = 0.0       # no alignment: distillation only
kd_lambda = 10.0       # w0, for the whole run: the best of 0.1, 0.3, 1, 3, 10, 30, 100 (seed 1337, 400 steps)
kd_stop = 0            # 0: the weight never decays (RKD)
kd_temperature = 1.0
