# The paper's 1.4B setting with its Pythia-160M teacher (GPT-NeoX; 768 wide, 12 layers), from its Hugging Face
# files. Pythia has its own tokenizer (GPT-NeoX's, 50,277 ids), so the student learns on data made with it:
#   python data/pile/prepare.py --tokenizer=EleutherAI/pythia-160m --input ... --val_input ... \
#       --max_tokens 20e9                                                      # -> data/pile/pythia-160m
#   torchrun --standalone --nproc_per_node=8 train.py config/let_pile_pythia.py
# and its baseline on the same data (another vocabulary makes another student, so compare like with like):
#   torchrun --standalone --nproc_per_node=8 train.py config/baseline_pile.py --dataset=pile/pythia-160m \
#       --out_dir=out-pile-baseline-pythia
# Pythia was itself trained on the Pile: the teacher has seen the student's data (so had the paper's).
import os
exec(open(os.path.join(os.path.dirname(__file__), 'let_pile.py')).read())  # the LET settings of let_pile.py
out_dir = 'out-pile-let-pythia'

teacher = 'EleutherAI/pythia-160m'  # a hub name (needs pip install ".[hf]") or a local folder
dataset = 'pile/pythia-160m'
