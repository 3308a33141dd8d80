# A plain (baseline) byte-level GPT on Shakespeare: the student of the LET demo, without its teacher.
# $ python data/shakespeare/prepare.py --tokenizer=byte && python train.py config/train_shakespeare_byte.py
out_dir = 'out-shakespeare-baseline'
dataset = 'shakespeare/byte'
