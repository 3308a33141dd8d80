# SALT on the CPU (the paper's first distillation baseline; Rawat et al. 2024, arXiv 2410.18779): the demo's student
# (config/train_shakespeare_byte.py) learns from the demo teacher's next-token distribution in an early phase,
# then trains plain.
# $ python train.py config/teacher_shakespeare.py && python train.py config/salt_shakespeare.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'train_shakespeare_byte.py')).read())
out_dir = 'out-shakespeare-salt'

teacher = 'out-shakespeare-teacher/ckpt.pt'
let_lambda = 0.0       # no alignment: distillation only
kd_schedule = 'step'   # SALT as published: KD at full weight until kd_stop, then switched off (docs/training.md)
kd_lambda = 20.0       # w0: the best of 0.5, 1, 2, 5, 20, 100 (seed 1337, 400 steps; docs/speedup.md), swept for
                       # the 'linear' schedule and not re-tuned for 'step'
kd_stop = 125          # SALT's n_KD = LET's S_stop (50% of the run), not SALT's ~17% (36K of ~208K steps): the same
                       # teacher phase as LET's, and our teacher stays better than the student all run, so SALT's
                       # reason to stop early (the student outgrowing it) does not call for a shorter phase here
kd_temperature = 1.0   # tau = 1: the teacher's own distribution
