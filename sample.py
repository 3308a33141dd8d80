"""
Sample from a trained model: a checkpoint of train.py (its out_dir) or any teacher spec teacher.py loads.

$ python sample.py --out_dir=out-shakespeare --start="ROMEO:" --num_samples=2 --max_new_tokens=300
$ python sample.py --init_from=smollm2-135m --start="The capital of France is"
$ python sample.py --init_from=HuggingFaceTB/SmolLM-135M --start="The capital of France is"
"""

import argparse

import torch

from configurator import exit_on_error
from teacher import add_model_options, load_model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)  # --out_dir, --init_from, --tokenizer
    p.add_argument('--start', default='\n', help="the prompt, or FILE:path to read it from a file")
    p.add_argument('--num_samples', type=int, default=2)
    p.add_argument('--max_new_tokens', type=int, default=300)
    p.add_argument('--temperature', type=float, default=0.8, help="1.0 = as the model predicts; lower = more likely text")
    p.add_argument('--top_k', type=int, default=200, help="sample only among the top_k most likely tokens")
    p.add_argument('--seed', type=int, default=1337)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = p.parse_args()

    _, loaded, tok = load_model(args, device=args.device)
    model = loaded.model
    start = args.start
    if start.startswith('FILE:'):
        with open(start[5:], encoding='utf-8') as f:
            start = f.read()
    ids = tok.encode(start) or [tok.eot_token if tok.eot_token is not None else 10]
    x = torch.tensor(ids, dtype=torch.long, device=args.device)[None, ...]
    torch.manual_seed(args.seed)
    for _ in range(args.num_samples):
        y = model.generate(x, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k)
        print(tok.decode(y[0].tolist()))
        print('---------------')


if __name__ == '__main__':
    exit_on_error(main)
