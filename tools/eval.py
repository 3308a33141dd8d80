"""
Downstream scores of a checkpoint: lm-evaluation-harness tasks, scored by model.py through
lm-eval's own model interface (LETLM below) with the checkpoint's own tokenizer. The default is
the LET paper's evaluation (arXiv 2602.05393, "following OLMo"): one-shot accuracy on nine tasks,
each with the metric OLMo reports for it, and their average.

$ python -m tools.eval --out_dir=out-let-pile                         # the paper's nine tasks, one-shot
$ python -m tools.eval --init_from=smollm2-135m --limit=500           # a teacher, 500 documents a task
$ python -m tools.eval --out_dir=out --tasks=piqa,/path/my_task.yaml  # lm-eval task names or YAML files

Prints one row per task (task, metric, value, stderr) and the average, and writes them with
lm-eval's full results to a JSON file next to the checkpoint (out_dir/eval_<tasks>_<n>shot.json).
Needs lm-eval: pip install ".[eval]". The tasks' datasets download from the Hugging
Face hub on first use and are cached (HF_DATASETS_CACHE); without the hub only tasks whose data is
already cached or local can run (docs/eval.md).
"""

import argparse
import json
import math
import os
import re
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from configurator import ConfigError, exit_on_error
from components.runtime import autocast, resolve_device, resolve_dtype
from teacher import add_model_options, load_model

# lm-eval is optional for the rest of the repo: without it this module still imports (LETLM then
# has a plain base class) and main() stops with one clear error instead of a traceback.
try:
    import lm_eval
    from lm_eval import utils as lm_eval_utils
    from lm_eval.api.model import TemplateLM
    from lm_eval.models.utils import Collator
    LM_EVAL_MISSING = None
except ImportError as e:
    TemplateLM, LM_EVAL_MISSING = object, e

# The paper's nine tasks (lm-eval's names, in the paper's order) and the metric each is reported
# with, as OLMo reports them (Groeneveld et al. 2024): accuracy normalised by the answer's length
# (acc_norm) where the choices are sentences of different lengths, plain accuracy (acc) elsewhere.
PAPER_TASKS = {'hellaswag': 'acc_norm', 'winogrande': 'acc', 'lambada_openai': 'acc',
               'openbookqa': 'acc_norm', 'arc_easy': 'acc', 'arc_challenge': 'acc_norm',
               'piqa': 'acc_norm', 'sciq': 'acc', 'boolq': 'acc'}


def reported_metric(task, metrics):
    """The metric a task's row reports: OLMo's for the paper's tasks, else acc, else acc_norm, else
    the first one lm-eval computed."""
    for name in (PAPER_TASKS.get(task), 'acc', 'acc_norm'):
        if name in metrics:
            return name
    return next(iter(metrics), None)


class LETLM(TemplateLM):
    """model.py's GPT as an lm-eval model: the log-likelihood of a continuation given a context,
    and of whole texts. What decides a score (left truncation to block_size, which positions are
    read, the order and batching of requests) follows lm-eval's Hugging Face backend, HFLM in
    lm_eval/models/huggingface.py, so a checkpoint here and its export_hf.py folder under
    `lm_eval --model hf` get the same numbers (tests/test_export_hf.py)."""

    def __init__(self, model, tokenizer, batch_size=32, device='cpu', dtype='float32'):
        super().__init__()
        self.model, self.tok = model.eval(), tokenizer
        self.max_length = model.config.block_size  # the longest input the model reads
        self.batch_size, self._device, self.dtype = batch_size, torch.device(device), dtype

    @property
    def device(self):
        return self._device

    @property
    def eot_token_id(self):
        # What an empty context and the first window of a text start from: the id that ends every
        # document in this repo's data. 'byte' has none and separates documents with a blank line,
        # so '\n' stands in.
        return self.tok.eot_token if self.tok.eot_token is not None else self.tok.encode('\n')[0]

    def tok_encode(self, string, add_special_tokens=None, **kwargs):
        return self.tok.encode(string)  # plain text, as the training data was encoded

    @torch.no_grad()
    def _logits(self, rows):
        """Lists of token ids, each at most block_size long -> logits (B, T, vocab), right-padded
        with id 0: the model is causal, so what follows a row's end changes none of its logits."""
        width = max(map(len, rows))
        x = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=self.device)
        with autocast(self.device.type, self.dtype):
            return self.model.final_hidden(x, with_logits=True)[1]

    def _loglikelihood_tokens(self, requests, disable_tqdm=False):
        """requests: (key, context ids, continuation ids) -> (sum of the continuation's
        log-probabilities, whether each of its tokens is the model's top choice), in their order."""
        # Longest first (the first row of a batch sets its width, and out-of-memory shows at once);
        # requests whose context + continuation[:-1] are equal (the one-token answers of a question)
        # share one forward. HFLM's Collator, with HFLM's sort key and grouping.
        collator = Collator(requests, sort_fn=lambda r: (-len(r[1] + r[2]), tuple(r[1] + r[2])),
                            group_by='contexts', group_fn=lambda r: r[1] + r[2][:-1])
        results = []
        progress = tqdm(total=len(requests), disable=disable_tqdm, desc='log-likelihoods')
        for batch in collator.get_batched(n=self.batch_size):
            rows = []
            for _, context, continuation in batch:
                if not context or not continuation or len(continuation) > self.max_length:
                    raise ValueError(f"a request of {len(context)} context and {len(continuation)} "
                                     f"continuation tokens: need one of each at least, and a "
                                     f"continuation of at most block_size={self.max_length}")
                # Too long for the model: keep the last block_size + 1 tokens, cutting context from
                # the left; the last token is only a target. (HFLM: (context + continuation)
                # [-(max_length + 1):][:-1])
                rows.append((context + continuation)[-(self.max_length + 1):][:-1])
            logits = self._logits(rows)
            for (key, context, continuation), row, row_logits in zip(batch, rows, logits):
                # position i predicts token i + 1, so the last len(continuation) positions of the
                # row (before its padding) predict the continuation; log-softmax in float32
                # whatever the forward's dtype
                end = len(row)
                logprobs = F.log_softmax(row_logits[end - len(continuation):end].float(), dim=-1)
                logprobs = logprobs[None]  # (1, n, vocab)
                greedy = logprobs.argmax(dim=-1)
                for key, cont, shared in collator.get_cache(
                        req_str=key, cxt_toks=context, cont_toks=continuation, logits=logprobs):
                    # a request sharing this forward ends where this one does: its continuation
                    # is at the last len(cont) positions
                    cont = torch.tensor(cont, device=shared.device)[None]  # (1, m)
                    m = cont.shape[1]
                    answer = (shared[:, -m:].gather(2, cont[..., None]).sum().item(),
                              bool((greedy[:, -m:] == cont).all()))
                    results.append(answer)
                    if key is not None:
                        self.cache_hook.add_partial('loglikelihood', key, answer)
                    progress.update(1)
        progress.close()
        return collator.get_original(results)

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        """The log-likelihood of whole texts (perplexity tasks) in HFLM's windows: each token scored
        once, the first block_size after eot_token_id, each later one after as much of the text
        before it as fits."""
        windows, owner = [], []
        for i, (text,) in enumerate(req.args for req in requests):
            for window in lm_eval_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1):
                windows.append((None, *lm_eval_utils.make_disjoint_window(window)))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (loglikelihood, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm)):
            totals[i] += loglikelihood
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial('loglikelihood_rolling', req.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm=False):
        raise NotImplementedError("eval.py scores log-likelihood tasks (the paper's nine are all "
                                  "of that kind); for generation tasks, export the checkpoint "
                                  "(python -m tools.export_hf) and run lm_eval --model hf on the folder")


# -----------------------------------------------------------------------------

def evaluate(lm, tasks, num_fewshot=1, limit=None, log_samples=False):
    """lm-eval's simple_evaluate of lm on tasks (names or YAML files): its results dict."""
    from lm_eval.tasks import TaskManager
    # Indexing the thousands of task files lm-eval ships takes 15 s on a small CPU; tasks given
    # only as YAML files need none of them.
    task_manager = TaskManager(include_defaults=not all(os.path.isfile(t) for t in tasks))
    # acc and acc_norm have closed-form standard errors; bootstrapping serves only metrics such as
    # LAMBADA's perplexity, and lm-eval's default 100,000 resamples take minutes on a CPU
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit,
                                   log_samples=log_samples, bootstrap_iters=1000,
                                   task_manager=task_manager)


def summarize(results, tasks):
    """One row per task asked for (a group is one row, lm-eval's aggregate): task, the metric it
    reports, value, standard error, documents scored; and the average of the rows' values."""
    subtasks = {t for children in results.get('group_subtasks', {}).values() for t in children}
    names = [t for t in results['results'] if t not in subtasks]
    order = {t: i for i, t in enumerate(tasks)}
    names.sort(key=lambda t: order.get(t, len(order)))  # as asked; YAML files' tasks keep theirs
    rows = []
    for task in names:
        scores = results['results'][task]
        metrics = {k.split(',')[0]: v for k, v in scores.items()
                   if ',' in k and '_stderr' not in k and isinstance(v, (int, float))}
        metric = reported_metric(task, metrics)
        if metric is None:
            continue
        stderr = scores.get(f"{metric}_stderr,none")
        rows.append({'task': task, 'metric': metric, 'value': metrics[metric],
                     'stderr': stderr if isinstance(stderr, (int, float)) else None,
                     'n_samples': results.get('n-samples', {}).get(task, {}).get('effective')})
    average = sum(r['value'] for r in rows) / len(rows) if rows else float('nan')
    return rows, average


def format_table(rows, average, num_fewshot):
    lines = [f"{'task':<24} {'metric':<9} {'value':>8} {'stderr':>8}"]
    for r in rows:
        has_stderr = r['stderr'] is not None and math.isfinite(r['stderr'])
        stderr = f"{r['stderr']:.4f}" if has_stderr else 'n/a'
        lines.append(f"{r['task']:<24} {r['metric']:<9} {r['value']:>8.4f} {stderr:>8}")
    lines.append(f"{f'average ({len(rows)} tasks)':<24} {'':<9} {average:>8.4f}"
                 f"   = {100 * average:.1f} in the paper's percent, {num_fewshot}-shot")
    return '\n'.join(lines)


def parse_limit(text):
    """--limit: documents per task (a whole number) or a fraction of each task (below 1)."""
    value = float(text)
    if value <= 0 or (value >= 1 and value != int(value)):
        raise argparse.ArgumentTypeError(f"{text}: a whole number of documents, or a fraction < 1")
    return int(value) if value >= 1 else value


def safe_name(text):
    return re.sub(r'[^\w.+-]', '_', text)


def default_json_path(spec, init_from, tasks, num_fewshot, limit):
    """eval_<tasks>_<n>shot[_limit<k>].json next to the checkpoint, <tasks> being 'paper' for the
    paper's nine; a teacher with no file of its own (smollm2-135m) writes to the current folder."""
    tag = 'paper' if tasks == list(PAPER_TASKS) else '+'.join(
        os.path.splitext(os.path.basename(t))[0] for t in tasks)
    name = f"eval_{safe_name(tag)[:80]}_{num_fewshot}shot"
    name += (f"_limit{limit}" if limit is not None else '') + '.json'
    if os.path.isfile(spec):
        return os.path.join(os.path.dirname(spec), name)
    if os.path.isdir(spec):
        return os.path.join(spec, name)
    return f"{safe_name(init_from)}_{name}"


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)  # --out_dir, --init_from, --tokenizer
    p.add_argument('--tasks', default=','.join(PAPER_TASKS), help="lm-eval task names or YAML "
                   "files, comma-separated (default: the paper's nine, %(default)s)")
    p.add_argument('--num_fewshot', type=int, default=1,
                   help="solved examples before each question (the paper: 1)")
    p.add_argument('--limit', type=parse_limit, default=None, help="documents per task (a number) "
                   "or a fraction of each task; default all. A quick look, not the paper's score")
    p.add_argument('--batch_size', type=int, default=32, help="sequences per forward")
    p.add_argument('--device', default='auto', help="auto (cuda, mps, else cpu) | cpu | cuda:N")
    p.add_argument('--dtype', default='auto', help="auto (bf16 autocast on CUDA, else float32) | "
                   "float32 | bfloat16 | float16")
    p.add_argument('--json', default='', help="where to write the results (default: beside the "
                   "checkpoint)")
    args = p.parse_args()

    if LM_EVAL_MISSING is not None:
        raise ConfigError(f"eval.py needs lm-eval ({LM_EVAL_MISSING}); install it with: "
                          f'pip install ".[eval]"')
    if args.num_fewshot < 0 or args.batch_size < 1:
        raise ConfigError("num_fewshot must be >= 0 and batch_size >= 1")
    tasks = [t.strip() for t in args.tasks.split(',') if t.strip()]
    if not tasks:
        raise ConfigError("--tasks is empty: name lm-eval tasks or YAML files, comma-separated")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, torch.device(device).type)
    spec, loaded, tok = load_model(args, device=device)
    json_path = args.json or default_json_path(spec, args.init_from, tasks, args.num_fewshot,
                                               args.limit)
    lm = LETLM(loaded.model, tok, batch_size=args.batch_size, device=device, dtype=dtype)
    print(f"evaluating {spec} ({loaded.n_params:,} parameters, tokenizer {tok.name!r}, "
          f"block_size {lm.max_length}) on {len(tasks)} task(s), {args.num_fewshot}-shot, "
          f"on {device} ({dtype})")
    t0 = time.time()
    try:
        results = evaluate(lm, tasks, args.num_fewshot, args.limit)
    except (ConnectionError, FileNotFoundError) as e:
        raise ConfigError(f"a task's data is not here ({type(e).__name__}: {e}); lm-eval's tasks "
                          f"download their datasets from the Hugging Face hub on first use and "
                          f"cache them (HF_DATASETS_CACHE), so run once where the hub is "
                          f"reachable, or give task YAML files with local data (docs/eval.md)"
                          ) from None
    rows, average = summarize(results, tasks)
    print(format_table(rows, average, args.num_fewshot))

    keep = ('results', 'groups', 'group_subtasks', 'configs', 'versions', 'n-shot',
            'higher_is_better', 'n-samples')
    record = {'model': spec, 'tokenizer': tok.name, 'num_fewshot': args.num_fewshot,
              'limit': args.limit, 'tasks': rows, 'average': average,
              'seconds': round(time.time() - t0, 1), 'device': device, 'dtype': dtype,
              'lm_eval': lm_eval.__version__, 'torch': torch.__version__,
              'lm_eval_results': {k: results[k] for k in keep if k in results}}
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, 'w') as f:
        json.dump(record, f, indent=2, default=lm_eval_utils.handle_non_serializable)
        f.write('\n')
    print(f"wrote {json_path}")


if __name__ == '__main__':
    exit_on_error(main)
