# The paper's 7B setting without its teacher: a LLaMA-style student of about 7.5B parameters on the Pile, in
# Llama 3's vocabulary (the tokenizer the LET run with Llama-3.2-1B needs), on 32 GPUs of 80 GB with FSDP2.
# Memory and cost per GPU, arithmetic: docs/scale.md. On 4 nodes of 8 GPUs, on each node (NODE = 0..3):
#   TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --nnodes=4 --nproc_per_node=8 --max-restarts=3 \
#       --rdzv-backend=c10d --rdzv-endpoint=HOST0:29400 --rdzv-id=pile7b train.py config/baseline_pile_7b.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'baseline_pile.py')).read())  # the 1.4B's recipe
out_dir = 'out-pile-7b-baseline'
dataset = 'pile/llama-3.2-1b'  # Llama 3's 128,256 tokens, uint32 ids: prepare.py --tokenizer=meta-llama/Llama-3.2-1B

# student: LLaMA-2-7B's trunk, 32 blocks x 4096, 32 heads of size 128, SwiGLU 11008 wide, rotary, RMSNorm,
# untied head: 7.53B parameters (6.48B in the blocks, 1.05B in the 128,256 x 4096 embedding and head)
n_layer = 32
n_embd = 4096
n_head = 32
n_kv_head = 32
mlp_hidden = 11008

# batch: 4 sequences of 2048 tokens per GPU per micro-step, 4 micro-steps per GPU: 32 GPUs x 4 x 4 x 2048 =
# 1,048,576 tokens per step; 19,073 steps = 20.0B tokens, the 1.4B configs' budget and schedule
batch_size = 4
gradient_accumulation_steps = 128  # global; 4 per GPU with 32 GPUs
warmup_iters = 1000                # LLaMA's peak lr 3e-4, reached more gently than the 1.4B's 500 steps

# sharding: 16 bytes per parameter (fp32 weights, gradients, AdamW) is 120 GB, more than a GPU; FSDP2 keeps
# 1/32 of it per GPU (3.8 GB) and computes with bf16 copies of the weights. Activation checkpointing keeps
# each block's input only. Memory per GPU, simulated (python -m dev.gpu_memory config/let_pile_7b.py;
# docs/scale.md): a peak of 55 GB of tensors with LET's teacher, 64 GB with the allowance for what the simulation
# cannot see, of 80; without activation checkpointing 106 GB.
data_parallel = 'fsdp'
activation_checkpointing = True
