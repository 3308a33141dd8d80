"""
The Hugging Face hub: a hub name ('EleutherAI/pythia-160m') becomes a local folder of the files asked for, for a
teacher (teacher_formats/hf.py) or a tokenizer (tokenizer.py). Without torch, so that tokenizing does not import it.
"""

import re

HUB_NAME = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')  # 'EleutherAI/pythia-160m'
HF_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt']  # what a tokenizer needs


def hub_download(repo, patterns, what):
    """Files of a Hugging Face hub repository matching patterns, downloaded (or from the local cache); the local
    folder. Every failure is one error that says how to do without the hub."""
    fix = (f"download it where there is internet (`hf download {repo} --local-dir DIR`) and pass DIR as the "
           f"{what}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise ImportError(f"{what} {repo!r} is a hub name, which needs huggingface_hub (pip install "
                          f"\".[hf]\"), or {fix}") from e
    try:
        return snapshot_download(repo, allow_patterns=patterns)
    except Exception as e:
        raise OSError(f"{what} {repo!r} is no local file or folder, and could not be downloaded from the Hugging "
                      f"Face hub ({type(e).__name__}); {fix}") from e
