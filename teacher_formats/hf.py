"""
Hugging Face model folders as teachers: config.json, the weights (model.safetensors, sharded or not, or the older
pytorch_model.bin) and the tokenizer files, or a hub name downloaded into such a folder. hf_families.py converts
each family; this module finds and reads the files.
"""

import json
import os

import torch

from data.tokenizer import GPT2_VOCAB, get_tokenizer
from model import GPT
from teacher_formats.hf_families import HF_FAMILIES, Unsupported
from data.hub import HF_TOKENIZER_FILES, hub_download

HF_GPT2_NAMES = ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl')
HF_WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                   'pytorch_model.bin.index.json')


def _read_weights(folder):
    """Every tensor of a Hugging Face folder, by its name there: model.safetensors, or its shards listed in
    model.safetensors.index.json, or the older pytorch_model.bin (sharded too)."""
    name = next((n for n in HF_WEIGHT_FILES if os.path.isfile(os.path.join(folder, n))), None)
    if name is None:
        raise FileNotFoundError(f"{folder} has config.json but no weights: none of {', '.join(HF_WEIGHT_FILES)}")
    files = [name]
    if name.endswith('.index.json'):
        with open(os.path.join(folder, name)) as f:
            files = sorted(set(json.load(f)['weight_map'].values()))
    weights = {}
    for file in files:
        path = os.path.join(folder, file)
        if file.endswith('.safetensors'):
            try:
                from safetensors.torch import load_file
            except ImportError as e:
                raise ImportError(f"{path} needs the safetensors package: pip install safetensors") from e
            weights.update(load_file(path))
        else:
            weights.update(torch.load(path, map_location='cpu', weights_only=True))
    return weights


def _tokenizer(folder, hf):
    """(name, spec) of the folder's tokenizer. A GPT-2 folder may come without one: then GPT-2's own."""
    files = set(os.listdir(folder))
    if 'tokenizer.json' in files or {'vocab.json', 'merges.txt'} <= files:
        return get_tokenizer(folder).name, folder
    if hf['model_type'] == 'gpt2':
        if hf['vocab_size'] < GPT2_VOCAB:
            raise ValueError(f"{folder}: vocab_size={hf['vocab_size']} is smaller than GPT-2's {GPT2_VOCAB}: "
                             f"its tokenizer is not GPT-2 BPE, so it shares none with a student")
        return 'gpt2', 'gpt2'
    raise FileNotFoundError(f"{folder} holds no tokenizer (tokenizer.json, or vocab.json and merges.txt): LET "
                            f"checks the data against the teacher's tokenizer, so copy the model's tokenizer files "
                            f"into the folder")


def load_hf_teacher(folder):
    """A Hugging Face model folder as (model.py's GPT, tokenizer name, tokenizer spec)."""
    with open(os.path.join(folder, 'config.json')) as f:
        hf = json.load(f)
    family = hf.get('model_type')
    if family not in HF_FAMILIES:
        raise Unsupported(f"{folder}: model_type {family!r} is not a teacher family this loader converts; "
                          f"supported: {', '.join(HF_FAMILIES)}")
    tokenizer, tokenizer_spec = _tokenizer(folder, hf)  # first: a missing tokenizer fails before the weights load
    weights = _read_weights(folder)
    try:
        config, sd = HF_FAMILIES[family](hf, weights, folder)
        model = GPT(config)
        model.load_state_dict(sd)
    except KeyError as e:
        raise ValueError(f"{folder}: a {family} model needs {e}, which its config.json or weights lack") from None
    except RuntimeError as e:
        raise ValueError(f"{folder}: the weights do not fit config.json ({e})") from None
    return model, tokenizer, tokenizer_spec


def download_hf_teacher(repo):
    """A hub model's config, weights (safetensors where the repository has them) and tokenizer files; the folder."""
    patterns = ['config.json', '*.safetensors', 'model.safetensors.index.json', *HF_TOKENIZER_FILES]
    folder = hub_download(repo, patterns, 'teacher')
    if not any(n.endswith('.safetensors') for n in os.listdir(folder)):
        folder = hub_download(repo, patterns + ['pytorch_model*.bin', 'pytorch_model.bin.index.json'], 'teacher')
    return folder
