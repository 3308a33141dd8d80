# The paper's best 1.4B setting: the student of baseline_pile.py guided by SmolLM-135M, from its Hugging Face files.
# SmolLM2 kept SmolLM's tokenizer (not checked here against SmolLM-135M's own files), and tokenizer.py's
# fingerprint knows that vocabulary, so the data is let_pile.py's and baseline_pile.py's: data/pile/smollm2. To check,
#   python data/pile/prepare.py --tokenizer=HuggingFaceTB/SmolLM-135M --input ... --val_input ... --max_tokens 20e9
# writes data/pile/smollm2 if the vocabulary is SmolLM2's, another folder if not (then set dataset to it, and run
# the baseline with --dataset=<that>); a teacher/data mismatch stops train.py before the first step anyway.
#   torchrun --standalone --nproc_per_node=8 train.py config/let_pile_smollm.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'let_pile.py')).read())  # the LET settings of let_pile.py
out_dir = 'out-pile-let-smollm'

teacher = 'HuggingFaceTB/SmolLM-135M'  # a hub name (downloaded once; needs pip install ".[hf]") or
                                       # a local folder with config.json, model.safetensors and tokenizer.json
dataset = 'pile/smollm2'
