# The paper's 1.4B setting with its OPT-125M teacher (768 wide, 12 layers, ReLU), from its Hugging Face files.
# OPT numbers GPT-2's BPE tokens its own way (50,265 ids, </s> ends a document), so the data is made with OPT's
# tokenizer (its folder ships vocab.json and merges.txt, which load as well as a tokenizer.json):
#   python data/pile/prepare.py --tokenizer=facebook/opt-125m --input ... --val_input ... \
#       --max_tokens 20e9                                                        # -> data/pile/opt-125m
#   torchrun --standalone --nproc_per_node=8 train.py config/let_pile_opt.py
# and its baseline on the same data:
#   torchrun --standalone --nproc_per_node=8 train.py config/baseline_pile.py --dataset=pile/opt-125m \
#       --out_dir=out-pile-baseline-opt
import os
exec(open(os.path.join(os.path.dirname(__file__), 'let_pile.py')).read())  # the LET settings of let_pile.py
out_dir = 'out-pile-let-opt'

teacher = 'facebook/opt-125m'  # a hub name (needs pip install ".[hf]") or a local folder
dataset = 'pile/opt-125m'
