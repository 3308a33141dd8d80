# The teacher of the Shakespeare LET demo: a small byte-level GPT trained 5x longer than the students ("late").
# speedup.py config/speedup_shakespeare.py trains exactly this into the same folder when it is missing.
# $ python train.py config/teacher_shakespeare.py                (about 2 minutes on a 2-core CPU)
out_dir = 'out-shakespeare-teacher'
dataset = 'shakespeare/byte'
n_layer = 2
n_head = 4
n_embd = 64
block_size = 128
batch_size = 16
max_iters = 2000
lr_decay_iters = 2000
warmup_iters = 30
learning_rate = 2e-3
min_lr = 2e-4
eval_interval = 500
eval_iters = 8
