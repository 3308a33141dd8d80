"""The paper's teacher families from Hugging Face folders (teacher.py): tiny random Llama (with grouped key/value
heads, with Llama 3's rotary scaling), GPT-NeoX (Pythia) and OPT models written by transformers itself load as
model.py's GPT and give transformers' final hidden state and logits; their tokenizers name the data they can teach
on; train.py trains with each, on uint32 data where the vocabulary needs it."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from conftest import ENV, TINY, run_train, train_cmd, trained
from configurator import ConfigError
from data.common import TokenWindows, check_dataset
from data.pile import prepare as pile
from hf_assets import HELD_OUT, hf_ids, tiny_hf_model, train_bpe, write_tokenizer
from test_eval import animal_docs, needs_lm_eval, run_eval, write_task
from model import GPT
from teacher import check_teacher, load_teacher
from teacher_formats.hf_families import Unsupported
from data.tokenizer import get_tokenizer

transformers = pytest.importorskip('transformers')
pytest.importorskip('tokenizers')

# family -> the tokenizer style it ships with (tests/hf_assets.py)
FAMILIES = {'llama': 'smollm', 'llama3': 'llama3', 'pythia': 'neox', 'opt': 'opt'}


@pytest.fixture(scope='module')
def tokenizers_by_style(tmp_path_factory):
    root = tmp_path_factory.mktemp('tok')
    return {style: write_tokenizer(root / style, train_bpe(style)[1]) for style in set(FAMILIES.values()) | {'big'}}


@pytest.fixture(scope='module')
def hf_teachers(tokenizers_by_style, tmp_path_factory):
    """{family: (transformers model, its folder)}: a tiny random model saved with save_pretrained, its tokenizer.json
    beside it. The llama3 one is saved in shards (model.safetensors.index.json)."""
    root = tmp_path_factory.mktemp('hf')
    out = {}
    for family, style in FAMILIES.items():
        model = tiny_hf_model(family, vocab_size=1024)
        folder = root / family
        model.save_pretrained(folder, **({'max_shard_size': '100KB'} if family == 'llama3' else {}))
        shutil.copy(os.path.join(tokenizers_by_style[style], 'tokenizer.json'), folder)
        out[family] = model, str(folder)
    return out


@pytest.mark.parametrize('family', FAMILIES)
def test_teacher_reproduces_transformers_hidden_state_and_logits(hf_teachers, family):
    hf_model, folder = hf_teachers[family]
    teacher = load_teacher(folder)
    idx = torch.randint(0, 1024, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = hf_model(idx, output_hidden_states=True)
    hidden, logits = teacher(idx, logits=True)  # one forward, both outputs
    # fp32 on CPU, logits up to about 10 in size: measured differences are 0 (Llama, OPT) and under 1e-5 (GPT-NeoX,
    # which adds attention and MLP in another order)
    torch.testing.assert_close(hidden, out.hidden_states[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, out.logits, atol=1e-4, rtol=1e-5)
    assert out.logits.abs().max() > 3  # a comparison of large numbers, not of near-zeros
    torch.testing.assert_close(teacher.hidden(idx), hidden, atol=0, rtol=0)
    torch.testing.assert_close(teacher.logits(idx), logits, atol=0, rtol=0)
    assert teacher.width == 64


@pytest.mark.parametrize('family', FAMILIES)
def test_teacher_layer_j_is_transformers_output_of_layer_j(hf_teachers, family):
    """let_teacher_layer=j: the residual stream after block j, Hugging Face's hidden_states[j + 1] (not normed),
    alone or beside the whole model's logits in one forward; layer -1 stays the final normed state."""
    hf_model, folder = hf_teachers[family]
    idx = torch.randint(0, 1024, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = hf_model(idx, output_hidden_states=True)
    j = 0  # the tiny models have 2 layers: j < n_layer - 1, so hidden_states[j + 1] has no final norm
    assert hf_model.config.num_hidden_layers == 2
    teacher = load_teacher(folder, layer=j)
    hidden, logits = teacher(idx, logits=True)
    torch.testing.assert_close(hidden, out.hidden_states[j + 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, out.logits, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(teacher.hidden(idx), hidden, atol=0, rtol=0)  # blocks 0..j only: the same state
    assert teacher.width == 64
    torch.testing.assert_close(load_teacher(folder).hidden(idx), out.hidden_states[-1], atol=1e-5, rtol=1e-5)


def test_each_family_is_what_the_paper_names(hf_teachers):
    cfg = {family: load_teacher(folder).model.config for family, (_, folder) in hf_teachers.items()}
    assert (cfg['llama'].n_kv_head, cfg['llama'].tie_embeddings, cfg['llama'].rope_scaling) == (2, False, None)
    assert (cfg['llama3'].n_kv_head, cfg['llama3'].tie_embeddings) == (1, True)
    assert cfg['llama3'].rope_scaling['factor'] == 8.0 and cfg['llama3'].rope_theta == 500000.0
    assert cfg['pythia'].parallel_block and cfg['pythia'].rope_dims == 16 // 4 and cfg['pythia'].mlp == 'gelu_exact'
    assert (cfg['opt'].mlp, cfg['opt'].pos, cfg['opt'].block_size) == ('relu', 'learned', 128)
    assert 'model.safetensors.index.json' in os.listdir(hf_teachers['llama3'][1])


def test_llama3_rotary_scaling_is_not_a_detail(hf_teachers):
    """Without its scaling the same Llama 3 weights give another hidden state: the test above would have seen it."""
    hf_model, folder = hf_teachers['llama3']
    teacher = load_teacher(folder)
    plain = GPT(teacher.model.config.__class__(**{**teacher.model.config.__dict__, 'rope_scaling': None})).eval()
    plain.load_state_dict(teacher.model.state_dict())
    idx = torch.randint(0, 1024, (1, 64), generator=torch.Generator().manual_seed(2))
    assert (plain.final_hidden(idx) - teacher.hidden(idx)).abs().max() > 0.1


def test_the_teacher_names_its_own_tokenizer_and_teaches_only_on_its_data(hf_teachers, tokenizers_by_style):
    _, folder = hf_teachers['pythia']
    teacher = load_teacher(folder)
    tok = get_tokenizer(folder)
    assert teacher.tokenizer == tok.name and tok.name.startswith('pythia-')
    # data made with the same vocabulary from elsewhere (its own label) teaches; anything else is refused
    same = get_tokenizer(tokenizers_by_style['neox'])
    assert same.name != teacher.tokenizer
    check_teacher(teacher, {'tokenizer': same.name, 'vocab_size': same.vocab_size}, block_size=64)
    other = get_tokenizer(tokenizers_by_style['opt'])
    for name in (other.name, 'smollm2', 'byte'):
        with pytest.raises(ConfigError, match=f"uses the '{teacher.tokenizer}' tokenizer.*--tokenizer={folder}"):
            check_teacher(teacher, {'tokenizer': name, 'vocab_size': 256}, block_size=64)


def test_folders_that_cannot_teach_are_one_clear_error(hf_teachers, tmp_path):
    _, folder = hf_teachers['llama']
    config = json.loads(open(os.path.join(folder, 'config.json')).read())

    def variant(name, files=('model.safetensors', 'tokenizer.json'), **change):
        d = tmp_path / name
        d.mkdir()
        (d / 'config.json').write_text(json.dumps(dict(config, **change)))
        for f in files:
            shutil.copy(os.path.join(folder, f), d)
        return str(d)

    with pytest.raises(Unsupported, match="model_type 'bert'.*supported: llama, gpt_neox, opt, gpt2"):
        load_teacher(variant('bert', model_type='bert'))
    with pytest.raises(FileNotFoundError, match="holds no tokenizer.*copy the model's tokenizer files"):
        load_teacher(variant('no-tokenizer', files=('model.safetensors',)))
    with pytest.raises(FileNotFoundError, match='no weights'):
        load_teacher(variant('no-weights', files=('tokenizer.json',)))
    with pytest.raises(Unsupported, match="rotary type 'yarn'.*refused"):
        load_teacher(variant('yarn', rope_parameters={'rope_type': 'yarn', 'factor': 4.0, 'rope_theta': 1e4}))
    with pytest.raises(Unsupported, match='head_dim=32 differs'):
        load_teacher(variant('head-dim', head_dim=32))
    with pytest.raises(ValueError, match='weights do not fit config.json'):
        load_teacher(variant('wider', intermediate_size=128))
    untied_without_head = variant('no-head', files=('tokenizer.json',), tie_word_embeddings=False)
    from safetensors.torch import load_file, save_file
    weights = load_file(os.path.join(folder, 'model.safetensors'))
    del weights['lm_head.weight']
    save_file(weights, os.path.join(untied_without_head, 'model.safetensors'))
    with pytest.raises(ValueError, match="a llama model needs 'lm_head.weight', which its config.json or weights lack"):
        load_teacher(untied_without_head)
    _, opt_folder = hf_teachers['opt']
    opt_config = json.loads(open(os.path.join(opt_folder, 'config.json')).read())
    (tmp_path / 'opt-350m').mkdir()
    (tmp_path / 'opt-350m' / 'config.json').write_text(json.dumps(dict(opt_config, do_layer_norm_before=False)))
    shutil.copy(os.path.join(opt_folder, 'tokenizer.json'), tmp_path / 'opt-350m')
    shutil.copy(os.path.join(opt_folder, 'model.safetensors'), tmp_path / 'opt-350m')
    with pytest.raises(Unsupported, match='post-norm OPT'):
        load_teacher(str(tmp_path / 'opt-350m'))


# -----------------------------------------------------------------------------
# data in the teacher's tokens, uint32 where the vocabulary needs it, and train.py with the teacher

def write_corpus(path, n_docs=60):
    docs = [f"Document {i}. " + HELD_OUT[i % len(HELD_OUT)] for i in range(n_docs)]
    path.write_text(''.join(json.dumps({'text': d}) + '\n' for d in docs))
    return docs


def test_uint32_data_round_trips_through_prepare_check_and_windows(tokenizers_by_style, tmp_path):
    folder = tokenizers_by_style['big']  # every id is above 70,000
    docs = write_corpus(tmp_path / 'corpus.jsonl')
    out = pile.prepare(folder, input=[str(tmp_path / 'corpus.jsonl')], val_docs=10, num_proc=2,
                       out_dir=str(tmp_path / 'data'))
    meta = check_dataset(out)
    tok = get_tokenizer(folder)
    assert meta['dtype'] == 'uint32' and meta['tokenizer'] == tok.name and meta['tokenizer_source'] == folder
    val = np.fromfile(os.path.join(out, 'val.bin'), dtype=np.uint32)
    assert val.min() >= 70_000 and meta['val_tokens'] == len(val)
    hf, _ = train_bpe('big')
    expected = [i for d in docs[:10] for i in hf_ids(hf, d) + [tok.eot_token]]
    assert val.tolist() == expected
    x, y = TokenWindows(os.path.join(out, 'val.bin'), 16, seed=0).read([0])
    assert x[0].tolist() == expected[:16] and y[0].tolist() == expected[1:17]


def test_train_py_learns_from_a_hf_teacher_on_uint32_data(tokenizers_by_style, tmp_path):
    """A Llama teacher whose vocabulary needs uint32 bins: prepare, check, teach and train, end to end."""
    tok_folder = tokenizers_by_style['big']
    teacher_folder = tmp_path / 'llama-big'
    tiny_hf_model('llama', vocab_size=72_000).save_pretrained(teacher_folder)
    shutil.copy(os.path.join(tok_folder, 'tokenizer.json'), teacher_folder)
    write_corpus(tmp_path / 'corpus.jsonl', n_docs=200)
    data = pile.prepare(str(teacher_folder), input=[str(tmp_path / 'corpus.jsonl')], val_docs=20, num_proc=1,
                        out_dir=str(tmp_path / 'data'))
    run = trained(tmp_path / 'out', run_train(dict(
        TINY, dataset=data, out_dir=str(tmp_path / 'out'), teacher=str(teacher_folder), let_lambda=1.0, let_stop=4,
        max_iters=6, eval_interval=6, lr_decay_iters=6)))
    tok = get_tokenizer(str(teacher_folder))
    assert f"tokenizer {tok.name}" in run.output
    log = run.train_log()
    assert log[0]['align_loss'] > 0 and log[0]['teacher_calls'] == 1 and log[-1]['lambda'] == 0.0
    assert run.records[-1]['val_loss'] < run.records[0]['val_loss']
    assert run.checkpoint()['model_args']['vocab_size'] >= tok.vocab_size > 2**16


@pytest.mark.parametrize('family', FAMILIES)
def test_train_py_trains_with_a_teacher_of_each_family(hf_teachers, family, tmp_path):
    """`train.py --teacher=<Hugging Face folder>` for every family: data prepared with the teacher's own tokenizer,
    LET on its hidden state and distillation on its logits until step 4, then plain training."""
    _, folder = hf_teachers[family]
    write_corpus(tmp_path / 'corpus.jsonl', n_docs=100)
    data = pile.prepare(folder, input=[str(tmp_path / 'corpus.jsonl')], val_docs=10, num_proc=1,
                        out_dir=str(tmp_path / 'data'))
    run = trained(tmp_path / 'out', run_train(dict(
        TINY, dataset=data, out_dir=str(tmp_path / 'out'), teacher=folder, let_lambda=1.0, let_stop=4,
        kd_lambda=1.0, kd_stop=4, max_iters=6, eval_interval=6, lr_decay_iters=6)))
    log = run.train_log()
    assert all(r['align_loss'] > 0 and r['kd_loss'] > 0 for r in log[:4])
    assert [r['teacher_logit_calls'] for r in log] == [1, 2, 3, 4, 4, 4]  # released at step 4
    assert run.records[-1]['val_loss'] < run.records[0]['val_loss']


@needs_lm_eval
def test_eval_py_reads_a_student_of_a_hugging_face_tokenizers_data_given_the_tokenizer(tokenizers_by_style,
                                                                                       tmp_path):
    """A checkpoint records only its tokenizer's name: eval.py (as sample.py) rebuilds a Hugging Face tokenizer
    from --tokenizer=<folder>, and without it stops with one line that asks for it."""
    folder = tokenizers_by_style['neox']
    write_corpus(tmp_path / 'corpus.jsonl', n_docs=100)
    data = pile.prepare(folder, input=[str(tmp_path / 'corpus.jsonl')], val_docs=10, num_proc=1,
                        out_dir=str(tmp_path / 'data'))
    out = tmp_path / 'out'
    trained(out, run_train(dict(TINY, dataset=data, out_dir=str(out), max_iters=4, eval_interval=4,
                                lr_decay_iters=4)))
    task = write_task(tmp_path, 'animals', animal_docs())
    missing = run_eval(f'--out_dir={out}', f'--tasks={task}', cache=tmp_path / 'hf')
    assert missing.returncode == 2, missing.stdout[-2000:] + missing.stderr[-3000:]
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and '--tokenizer=' in lines[0], missing.stderr
    done = run_eval(f'--out_dir={out}', f'--tasks={task}', f'--tokenizer={folder}', cache=tmp_path / 'hf')
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert re.search(r'^animals +acc +[01]\.\d{4} ', done.stdout, re.M), done.stdout


def test_train_py_refuses_a_teacher_of_another_tokenizer(hf_teachers, tiny_error):
    _, folder = hf_teachers['opt']
    message = tiny_error(teacher=folder, let_lambda=1.0)  # on byte-level Shakespeare
    assert "uses the 'opt-" in message and "made with 'byte'" in message and f"--tokenizer={folder}" in message


@pytest.mark.parametrize('name', ['let_pile_smollm', 'let_pile_pythia', 'let_pile_opt'])
def test_the_paper_teacher_configs_change_only_teacher_data_and_out_dir(name):
    """Each is let_pile.py (the same student, schedule and LET settings) with its teacher, and the dataset that
    data/pile/prepare.py --tokenizer=<teacher> writes (pile/<label of the teacher>; SmolLM's is SmolLM2's)."""
    from configurator import changes, read_config_file
    from data.tokenizer import tokenizer_label
    config = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'config', f'{name}.py')
    changed = changes(config, os.path.join(os.path.dirname(config), 'let_pile.py'))
    settings = read_config_file(config)
    assert 'teacher' in changed and set(changed) <= {'teacher', 'dataset'}
    expected = 'pile/smollm2' if name == 'let_pile_smollm' else 'pile/' + tokenizer_label(settings['teacher'])
    assert settings['dataset'] == expected and settings['out_dir'] == 'out-pile-let-' + name.split('_')[-1]


def test_a_hub_name_that_cannot_be_downloaded_says_how_to_do_without_the_hub(shakespeare_byte, tmp_path):
    """Offline (HF_HUB_OFFLINE=1, so the hub library fails at once instead of waiting on the network)."""
    pytest.importorskip('huggingface_hub')
    done = subprocess.run(train_cmd(dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / 'o'),
                                         teacher='nobody/no-such-model', let_lambda=1.0)),
                          capture_output=True, text=True, env=dict(ENV, HF_HUB_OFFLINE='1'), timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "teacher 'nobody/no-such-model' is no local file or folder" in lines[0]
    assert 'hf download nobody/no-such-model --local-dir DIR' in lines[0]
