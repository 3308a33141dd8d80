# The CPU demo's student and schedule: a byte-level GPT on Shakespeare, trained plain. This is the baseline the
# LET demo is compared with; the teacher, LET and speedup configs build on this file.
# $ python train.py config/train_shakespeare_byte.py        (under a minute on a 2-core CPU)
out_dir = 'out-shakespeare-baseline'
dataset = 'shakespeare/byte'       # prepared with: python data/shakespeare/prepare.py --tokenizer=byte
device = 'cpu'
compile = False                    # compiling costs more than it saves for runs this short on a CPU

n_layer = 3                        # 3 blocks x 128 wide, 4 heads: 0.63M parameters
n_head = 4
n_embd = 128
block_size = 128
batch_size = 8                     # 1,024 tokens per step
max_iters = 250                    # 0.26M tokens: 1/18 of an epoch of the 4.6M training bytes
lr_decay_iters = 250               # cosine to min_lr exactly at the end
warmup_iters = 20
learning_rate = 3e-3
min_lr = 3e-4
eval_interval = 25                 # the resolution of speedup.py's "steps to target"
eval_iters = 8                     # 8 batches = 8k val tokens per evaluation, the same ones every time
