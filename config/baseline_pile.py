# The paper's setting without its teacher: a LLaMA-style student of about 1.4B parameters on the Pile, in
# SmolLM2's vocabulary (the tokenizer the LET run needs), on 8 GPUs of 80 GB.
#   python data/pile/prepare.py --input '/data/pile/train/*.jsonl.zst' --val_input /data/pile/val.jsonl.zst \
#       --max_tokens 20e9         (the paper's budget; docs/training.md: where the Pile is found today)
#   torchrun --standalone --nproc_per_node=8 train.py config/baseline_pile.py
out_dir = 'out-pile-baseline'
dataset = 'pile/smollm2'

# student: 24 blocks x 2048, 16 heads of size 128, SwiGLU 5632 wide, rotary, RMSNorm, untied head:
# 1.43B parameters (1.33B without the 101M token-embedding table)
n_layer = 24
n_embd = 2048
n_head = 16
n_kv_head = 16
mlp_hidden = 5632
norm = 'rmsnorm'
mlp = 'swiglu'
pos = 'rope'
rope_theta = 10000.0
bias = False
tie_embeddings = False
dropout = 0.0

# batch: 4 sequences of 2048 tokens per GPU per micro-step, 16 micro-steps per GPU: 8 GPUs x 16 x 4 x 2048 =
# 1,048,576 tokens per step; 19,073 steps = 20.0B tokens (the paper's budget). Memory per GPU under DDP, simulated
# (python -m dev.gpu_memory config/let_pile.py --nproc=8; docs/scale.md): 59 GB of tensors with LET's teacher, 68 GB
# with the allowance for what the simulation cannot see, of 80; 8 sequences per micro-step would need 99 GB. Halving
# the micro-batch costs no FLOPs (the same tokens per step); unmeasured on a GPU.
block_size = 2048
batch_size = 4
gradient_accumulation_steps = 128  # global; 16 per GPU with 8 GPUs
max_iters = 19073
lr_decay_iters = 19073

# AdamW and a cosine schedule, LLaMA's recipe
learning_rate = 3e-4
min_lr = 3e-5
warmup_iters = 500
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

eval_interval = 500
eval_iters = 10      # 10 global batches = 10.5M tokens per split per evaluation
log_interval = 10
