# LET on the CPU: the byte-level Shakespeare student of config/speedup_shakespeare.py, guided by the teacher that
# config/teacher_shakespeare.py (or speedup.py) trained.
# $ python train.py config/teacher_shakespeare.py && python train.py config/let_shakespeare.py
out_dir = 'out-shakespeare-let'
dataset = 'shakespeare/byte'
n_layer = 4
n_head = 4
n_embd = 192
block_size = 128
batch_size = 16
max_iters = 400
lr_decay_iters = 400
warmup_iters = 30
learning_rate = 2e-3
min_lr = 2e-4
eval_interval = 20
eval_iters = 8

teacher = 'out-shakespeare-teacher/ckpt.pt'
let_layers = (1,)      # k: the student's second block (counted from 0)
let_proj = 'linear'    # a learned 192 -> 64 projection of the student state
let_loss = 'cosine'
let_lambda = 100.0     # lambda0: large at this scale, see config/speedup_shakespeare.py
let_stop = 200         # S_stop: 50% of the run
