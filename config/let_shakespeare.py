# LET on the CPU: the demo's student (config/train_shakespeare_byte.py) guided by the demo's teacher.
# $ python train.py config/teacher_shakespeare.py && python train.py config/let_shakespeare.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'train_shakespeare_byte.py')).read())
out_dir = 'out-shakespeare-let'

teacher = 'out-shakespeare-teacher/ckpt.pt'
let_layers = (1,)      # k: the output of the student's second block (counted from 0)
let_proj = 'linear'    # P: a learned 128 -> 64 projection of the student state (the paper interpolates)
let_loss = 'cosine'
let_lambda = 100.0     # lambda0: 1000x the paper's 0.1; at this scale the gain grew with lambda0 (docs/speedup.md)
let_stop = 125         # S_stop: 50% of the run
