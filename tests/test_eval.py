"""
eval.py: lm-evaluation-harness tasks scored by model.py through lm-eval's model interface (LETLM).

Offline: each task here is written by the test (a jsonl file, and an lm-eval YAML that reads it
with the `json` loader into a temporary cache); the models are tiny, random or trained here by
train.py on the task's own text. Tests that need lm-eval skip where it is not installed
(pip install ".[eval]").
"""

import importlib.util
import json
import os
import random
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ENV, REPO, TINY, run_train, trained
from data.write import BinWriter, begin, finish
from tools.eval import LETLM, PAPER_TASKS, evaluate, summarize
from model import GPT, GPTConfig
from data.tokenizer import get_tokenizer

EVAL = ('-m', 'tools.eval')  # run from the repository's root
needs_lm_eval = pytest.mark.skipif(
    importlib.util.find_spec('lm_eval') is None,
    reason='lm-eval is not installed (pip install ".[eval]")')
# no test reaches a hub: the data are local files, and these make any attempt fail at once
OFFLINE = {'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}
os.environ.update(OFFLINE)


# -----------------------------------------------------------------------------
# a local multiple-choice task

ANIMALS = [('cow', 'moo'), ('dog', 'woof'), ('cat', 'meow'), ('duck', 'quack'),
           ('horse', 'neigh'), ('pig', 'oink'), ('sheep', 'baa'), ('owl', 'hoot')]


def animal_docs(shift=0):
    """Eight questions ('The cow says'), four sounds each to choose from, the right one at place
    i % 4; `answer` is its index. shift=1 marks the next choice instead: every answer wrong."""
    sounds = [sound for _, sound in ANIMALS]
    docs = []
    for i, (animal, _) in enumerate(ANIMALS):
        choices = [sounds[(i + j) % len(sounds)] for j in range(4)]  # the right one, three others
        right = i % 4
        choices[0], choices[right] = choices[right], choices[0]
        docs.append({'question': f'The {animal} says', 'choices': choices,
                     'answer': (right + shift) % 4})
    return docs


def write_task(folder, name, docs):
    """An lm-eval multiple-choice task `name` in folder: name.jsonl holds the docs, name.yaml reads
    them with the `json` loader (absolute path, cache in folder); the YAML's path. lm-eval renders
    it as any such task: 'The cow says' + ' moo', examples separated by a blank line."""
    folder = os.path.abspath(folder)
    data = os.path.join(folder, f'{name}.jsonl')
    with open(data, 'w') as f:
        f.writelines(json.dumps(doc) + '\n' for doc in docs)
    yaml = os.path.join(folder, f'{name}.yaml')
    with open(yaml, 'w') as f:
        f.write(f"task: {name}\n"
                f"dataset_path: json\n"
                f"dataset_kwargs:\n"
                f"  data_files:\n"
                f"    test: {data}\n"
                f"  cache_dir: {folder}/hf-datasets\n"
                f"output_type: multiple_choice\n"
                f"test_split: test\n"
                f"fewshot_split: test\n"  # named: lm-eval never shows a question as its own example
                f"doc_to_text: '{{{{question}}}}'\n"
                f"doc_to_target: answer\n"
                f"doc_to_choice: choices\n"
                f"metric_list:\n"
                f"  - {{metric: acc, aggregation: mean, higher_is_better: true}}\n"
                f"  - {{metric: acc_norm, aggregation: mean, higher_is_better: true}}\n")
    return yaml


def tiny_model(flavour='gpt2', vocab_size=256, block_size=16, seed=0, **switches):
    """A random tiny GPT, its weights spread wider than the init's (sharper predictions: a stricter
    comparison)."""
    torch.manual_seed(seed)
    args = dict(block_size=block_size, vocab_size=vocab_size, n_layer=2, n_head=4, n_embd=32)
    if flavour == 'llama':
        args.update(norm='rmsnorm', mlp='swiglu', pos='rope', bias=False, n_kv_head=2,
                    tie_embeddings=False)
    model = GPT(GPTConfig(**args | switches)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


@pytest.fixture(scope='module')
def animal_run(tmp_path_factory):
    """A byte-level GPT (TINY: 2 blocks x 32) that train.py trained on the animal task's own text,
    the solved questions in random orders ('The owl says hoot\\n\\nThe cow says moo\\n\\n...'),
    long enough to know every answer; its out_dir."""
    tok = get_tokenizer('byte')
    data = tmp_path_factory.mktemp('animal_data')
    docs, rng = animal_docs(), random.Random(0)
    begin(data)
    counts = {}
    for split in ('train', 'val'):
        texts = []
        for _ in range(300):
            rng.shuffle(docs)
            texts += [f"{d['question']} {d['choices'][d['answer']]}\n\n" for d in docs]
        with BinWriter(os.path.join(data, f'{split}.bin'), tok.vocab_size) as writer:
            writer.write(tok.encode(''.join(texts)))
        counts[split] = writer.num_tokens
    finish(data, tok, counts['train'], counts['val'], source='tests/test_eval.py animals')
    out = tmp_path_factory.mktemp('animal_run')
    trained(out, run_train(dict(TINY, dataset=str(data), out_dir=str(out), block_size=64,
                                batch_size=8, max_iters=300, eval_interval=300, eval_iters=1,
                                log_interval=100, warmup_iters=10, lr_decay_iters=300,
                                learning_rate=1e-2, min_lr=1e-3)))
    return str(out)


def run_eval(*args, cache):
    env = ENV | OFFLINE | {'HF_DATASETS_CACHE': str(cache)}
    return subprocess.run([sys.executable, *EVAL, *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


# -----------------------------------------------------------------------------
# the adapter against the model's own log-probabilities

def direct_loglikelihood(model, context, continuation):
    """sum log p(continuation | context) from one plain forward of the model on the last
    block_size + 1 tokens; and whether each continuation token is the model's top choice."""
    ids = (context + continuation)[-(model.config.block_size + 1):]
    with torch.no_grad():
        logits = model.final_hidden(torch.tensor([ids[:-1]]), with_logits=True)[1][0]  # (T, V)
    n = len(continuation)
    logprobs = F.log_softmax(logits[-n:], dim=-1)  # the positions that predict the continuation
    targets = torch.tensor(ids[-n:])
    is_greedy = bool((logprobs.argmax(-1) == targets).all())
    return logprobs.gather(1, targets[:, None]).sum().item(), is_greedy


def greedy_continuation(model, context, n):
    ids = list(context)
    with torch.no_grad():
        for _ in range(n):
            logits = model.final_hidden(torch.tensor([ids]), with_logits=True)[1]
            ids.append(logits[0, -1].argmax().item())
    return ids[len(context):]


def byte_ids(text):
    return list(text.encode())  # the byte tokenizer's ids


@needs_lm_eval
@pytest.mark.parametrize('flavour', ['gpt2', 'llama'])
def test_loglikelihood_is_the_sum_of_the_models_own_log_probabilities(flavour):
    from lm_eval.api.instance import Instance
    model, b = tiny_model(flavour, block_size=16), byte_ids
    # (context, continuation) as lm-eval sends them, and the token ids they must become
    cases = [
        (('The cat sat on the', ' mat'), (b('The cat sat on the'), b(' mat'))),
        # a context longer than block_size; its trailing space moves to the continuation
        (('A long context ' * 4, 'goes on'), (b(('A long context ' * 4).rstrip()), b(' goes on'))),
        # 13 + 16 tokens > block_size + 1: one context token left, the continuation fills the rest
        (('Q: a question', ' with an answer.'), (b('Q: a question'), b(' with an answer.'))),
        # one-token continuations of one context: they share a forward
        (('2+2=', '4'), (b('2+2='), b('4'))),
        (('2+2=', '5'), (b('2+2='), b('5'))),
        # an empty context starts from '\n', the separator of byte-level data
        (('', 'Hello'), ([10], b('Hello'))),
    ]
    lm = LETLM(model, get_tokenizer('byte'), batch_size=3)  # several batches, each padded
    requests = [Instance('loglikelihood', {}, args, i) for i, (args, _) in enumerate(cases)]
    got = lm.loglikelihood(requests)
    for (args, ids), (loglikelihood, is_greedy) in zip(cases, got):
        want, want_greedy = direct_loglikelihood(model, *ids)
        assert loglikelihood == pytest.approx(want, abs=1e-4), args
        assert is_greedy == want_greedy, args
    # what the model itself continues with is greedy (as token ids: its bytes need not be text)
    context = b('Hello')
    [(_, is_greedy)] = lm._loglikelihood_tokens(
        [(None, context, greedy_continuation(model, context, 8))])
    assert is_greedy and not got[0][1]


@needs_lm_eval
def test_a_continuation_longer_than_block_size_is_refused():
    from lm_eval.api.instance import Instance
    lm = LETLM(tiny_model(block_size=16), get_tokenizer('byte'))
    with pytest.raises(ValueError, match='block_size=16'):
        lm.loglikelihood([Instance('loglikelihood', {}, ('Q:', ' ' + 'x' * 16), 0)])


@needs_lm_eval
def test_rolling_loglikelihood_of_a_short_text_is_its_log_probability_after_a_newline():
    from lm_eval.api.instance import Instance
    model, text = tiny_model(block_size=16), 'Short text.'
    lm = LETLM(model, get_tokenizer('byte'))
    [got] = lm.loglikelihood_rolling([Instance('loglikelihood_rolling', {}, (text,), 0)])
    assert got == pytest.approx(direct_loglikelihood(model, [10], byte_ids(text))[0], abs=1e-4)
    # longer texts, in HFLM's windows, are compared with lm-eval's own HF backend in
    # test_export_hf.py


# -----------------------------------------------------------------------------
# tasks and the summary

def test_the_default_tasks_are_the_papers_nine_with_olmos_metrics():
    assert list(PAPER_TASKS) == ['hellaswag', 'winogrande', 'lambada_openai', 'openbookqa',
                                 'arc_easy', 'arc_challenge', 'piqa', 'sciq', 'boolq']
    acc_norm = {t for t, metric in PAPER_TASKS.items() if metric == 'acc_norm'}
    assert acc_norm == {'piqa', 'hellaswag', 'openbookqa', 'arc_challenge'}
    assert set(PAPER_TASKS.values()) == {'acc', 'acc_norm'}


@needs_lm_eval
def test_the_paper_tasks_are_lm_evals_and_compute_their_metric():
    """Each default task is a YAML that lm-eval ships, whose metric_list (its own, or that of the
    file it includes) has the metric its row reports: a typo or a renamed task shows here."""
    import yaml
    tasks_dir = os.path.join(os.path.dirname(importlib.util.find_spec('lm_eval').origin), 'tasks')
    found = {}
    for folder, _, files in os.walk(tasks_dir):
        for name in files:
            if name.endswith('.yaml'):
                path = os.path.join(folder, name)
                with open(path, encoding='utf-8') as f:
                    m = re.search(r'^task: (\S+)\s*$', f.read(), re.M)
                if m and m.group(1) in PAPER_TASKS:
                    found[m.group(1)] = path

    def metrics(path):
        with open(path, encoding='utf-8') as f:
            config = yaml.load(f, Loader=yaml.BaseLoader)  # !function tags read as plain text
        listed = [m['metric'] for m in config.get('metric_list', [])]
        if not listed and 'include' in config:
            return metrics(os.path.join(os.path.dirname(path), config['include']))
        return listed

    assert found.keys() == PAPER_TASKS.keys()
    for task, path in found.items():
        assert PAPER_TASKS[task] in metrics(path), (task, path)


def test_the_summary_reports_olmos_metric_for_each_task_and_their_average():
    results = {'results': {
        'piqa': {'acc,none': 0.6, 'acc_stderr,none': 0.01, 'acc_norm,none': 0.7,
                 'acc_norm_stderr,none': 0.02},
        'sciq': {'acc,none': 0.8, 'acc_stderr,none': 0.03, 'acc_norm,none': 0.75},
        'lambada_openai': {'perplexity,none': 30.0, 'acc,none': 0.3}}}
    rows, average = summarize(results, ['sciq', 'piqa', 'lambada_openai'])
    assert [(r['task'], r['metric'], r['value'], r['stderr']) for r in rows] == [
        ('sciq', 'acc', 0.8, 0.03), ('piqa', 'acc_norm', 0.7, 0.02),
        ('lambada_openai', 'acc', 0.3, None)]
    assert average == pytest.approx(0.6)


@needs_lm_eval
@pytest.mark.parametrize('shots', [0, 1])
def test_one_shot_puts_one_solved_example_before_each_question(tmp_path, shots):
    task = write_task(tmp_path, 'animals', animal_docs())
    lm = LETLM(tiny_model(block_size=64), get_tokenizer('byte'))
    results = evaluate(lm, [task], num_fewshot=shots, log_samples=True)
    for sample in results['samples']['animals']:
        doc = sample['doc']
        assert [cont for _, cont in sample['arguments']] == [' ' + c for c in doc['choices']]
        examples = sample['arguments'][0][0].split('\n\n')
        assert len(examples) == shots + 1 and examples[-1] == doc['question']
        if shots:  # another question, with its right answer
            question, _, sound = examples[0].rpartition(' ')
            assert question != doc['question'] and (question.split()[1], sound) in ANIMALS


# -----------------------------------------------------------------------------
# eval.py, the script

@needs_lm_eval
def test_eval_py_gives_1_to_a_model_that_knows_the_answers_and_0_when_they_move(animal_run,
                                                                                tmp_path):
    right = write_task(tmp_path, 'animals', animal_docs())
    wrong = write_task(tmp_path, 'animals_moved', animal_docs(shift=1))  # every answer wrong
    done = run_eval(f'--out_dir={animal_run}', f'--tasks={right},{wrong}', cache=tmp_path / 'hf')
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert re.search(r'^animals +acc +1\.0000 +0\.0000$', done.stdout, re.M), done.stdout
    assert re.search(r'^animals_moved +acc +0\.0000 +0\.0000$', done.stdout, re.M), done.stdout
    assert re.search(r'^average \(2 tasks\) +0\.5000 ', done.stdout, re.M), done.stdout
    # the record sits next to the checkpoint, named after the tasks and the shots
    with open(os.path.join(animal_run, 'eval_animals+animals_moved_1shot.json')) as f:
        record = json.load(f)
    assert [(r['task'], r['metric'], r['value'], r['n_samples']) for r in record['tasks']] == [
        ('animals', 'acc', 1.0, 8), ('animals_moved', 'acc', 0.0, 8)]
    assert (record['average'], record['num_fewshot'], record['tokenizer']) == (0.5, 1, 'byte')
    assert record['lm_eval_results']['n-shot'] == {'animals': 1, 'animals_moved': 1}


@needs_lm_eval
def test_a_task_whose_data_is_not_here_is_one_clear_error(animal_run, tmp_path):
    task = tmp_path / 'hub_task.yaml'
    task.write_text("task: hub_task\ndataset_path: nobody/no-such-dataset\n"
                    "output_type: multiple_choice\ntest_split: test\n"
                    "doc_to_text: '{{question}}'\ndoc_to_target: answer\ndoc_to_choice: choices\n")
    done = run_eval(f'--out_dir={animal_run}', f'--tasks={task}', cache=tmp_path / 'hf')
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), done.stderr
    assert 'Hugging Face hub' in lines[0]


def test_eval_py_without_lm_eval_names_the_requirements_file():
    # None in sys.modules makes every `import lm_eval` fail, as on a machine without it
    code = ("import runpy, sys; sys.modules['lm_eval'] = None; "
            "sys.argv = ['tools/eval.py', '--out_dir=nowhere']; "
            "runpy.run_module('tools.eval', run_name='__main__')")
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=ENV,
                          cwd=REPO, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        "error: eval.py needs lm-eval (import of lm_eval halted; None in sys.modules); "
        'install it with: pip install ".[eval]"']
