# The paper's 7B configuration: the 7.5B LLaMA-style student of baseline_pile_7b.py, guided by Llama-3.2-1B
# (the paper's teacher at this scale, about 1/6 of the student) through LET, on 32 GPUs of 80 GB.
#   TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --nnodes=4 --nproc_per_node=8 --max-restarts=3 \
#       --rdzv-backend=c10d --rdzv-endpoint=HOST0:29400 --rdzv-id=pile7b train.py config/let_pile_7b.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'baseline_pile_7b.py')).read())  # same data, model, schedule
out_dir = 'out-pile-7b-let'

# a Hugging Face Llama folder or hub name (the Llama loader of teacher.py): 16 blocks x 2048, tied head,
# 1.24B parameters, Llama 3's tokenizer, the one that made dataset 'pile/llama-3.2-1b'
teacher = 'meta-llama/Llama-3.2-1B'
let_lambda = 0.1           # lambda0: the paper's best at 1.4B ({0.01, 0.1, 0.3, 1.0, 3.0}); not swept at 7B here
let_loss = 'cosine'        # 1 - cos, the paper's negative cosine
let_proj = 'interp'        # the paper's parameter-free resize of the teacher state (2048 -> 4096)
# k: one sixth of the depth, as let_pile.py's block 3 of 24: block index 5, the 6th of 32. Early enough that 26
# blocks stay free to go beyond a 1B model; deep enough that 6 blocks can build a state comparable to the
# final state of a 16-block teacher. The paper does not name its k; unmeasured here.
let_layers = (5,)
# S_stop: 2,000 steps = 2.1B tokens, about 10% of the run, as let_pile.py. The teacher's forward costs ~5% of
# a student step (2.2 vs 45 GFLOP per token), so under 0.5% of the whole run; after S_stop it is released and
# its 2.5 GB of bf16 weights are free.
let_stop = 2000
