"""dev/gpu_check.py (the one-command GPU acceptance run) in its --cpu mode, its budget and statuses, its checks'
judgements, dev/host_syncs.py, and bench_nanogpt.py's presets, time limit and working folder: the logic a GPU run
depends on, exercised where there is no GPU (its CUDA-only decisions with stand-ins)."""

import json
import os
import subprocess
import sys
import time
import types

import pytest
import torch

import dev.bench_nanogpt as bench_nanogpt
from conftest import ENV, REPO, TINY
from components.runtime import Stopwatch
from configurator import to_args
from dev import gpu_check, gpu_checks, gpu_harness, host_syncs


# ----------------------------------------------------------------------------- the whole script

# nanoGPT's train.py where no checkout can be fetched (the tests run offline): what bench_nanogpt relies on, as
# karpathy/nanoGPT at 3adf61e does it: its settings overridden by its configurator.py, which it reads from its
# working folder as it reads data/<dataset>/, and one 'iter N: loss L, time Tms' line per step; the step trains a
# real, tiny model (a bigram table)
STANDIN_NANOGPT = """
import os, pickle, time
import numpy as np
import torch
dataset, device, compile, dtype, bias, dropout, out_dir = 'openwebtext', 'cuda', True, 'bfloat16', False, 0.0, 'out'
n_layer = n_head = 12
n_embd, block_size, batch_size, gradient_accumulation_steps = 768, 1024, 12, 40
eval_interval, eval_iters, log_interval, max_iters, always_save_checkpoint = 2000, 200, 1, 600000, True
exec(open('configurator.py').read())
data = np.memmap(os.path.join('data', dataset, 'train.bin'), dtype=np.uint16, mode='r')
with open(os.path.join('data', dataset, 'meta.pkl'), 'rb') as f:
    vocab = pickle.load(f)['vocab_size']
os.makedirs(out_dir, exist_ok=True)
table = torch.nn.Embedding(vocab, vocab)
opt = torch.optim.AdamW(table.parameters(), lr=1e-2)
for it in range(max_iters + 1):
    t0 = time.time()
    starts = np.random.randint(len(data) - block_size - 1, size=batch_size)
    x, y = (torch.stack([torch.from_numpy(data[i + o:i + o + block_size].astype(np.int64)) for i in starts])
            for o in (0, 1))
    loss = torch.nn.functional.cross_entropy(table(x).view(-1, vocab), y.view(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(f"iter {it}: loss {loss.item():.4f}, time {(time.time() - t0) * 1000:.2f}ms, mfu -100.00%", flush=True)
"""
STANDIN_CONFIGURATOR = """
import sys
from ast import literal_eval
for arg in sys.argv[1:]:
    key, val = arg[2:].split('=', 1)
    assert key in globals(), key
    try:
        attempt = literal_eval(val)
    except (SyntaxError, ValueError):
        attempt = val
    assert type(attempt) == type(globals()[key]), (key, val)
    globals()[key] = attempt
"""


@pytest.fixture
def nanogpt(tmp_path):
    """A stand-in nanoGPT checkout (train.py, configurator.py, model.py); its folder."""
    checkout = tmp_path / 'nanoGPT'
    checkout.mkdir()
    (checkout / 'train.py').write_text(STANDIN_NANOGPT)
    (checkout / 'configurator.py').write_text(STANDIN_CONFIGURATOR)
    (checkout / 'model.py').write_text('')
    return checkout


def test_the_cpu_mode_runs_every_check_end_to_end_and_writes_both_reports(shakespeare_byte, nanogpt, tmp_path):
    out = tmp_path / 'check'
    done = subprocess.run([sys.executable, '-m', 'dev.gpu_check', '--cpu', f'--nanogpt={nanogpt}', f'--out={out}'],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    print(done.stdout[-6000:], done.stderr[-3000:])  # shown when the test fails
    report = json.loads((out / 'gpu_check.json').read_text())
    md = (out / 'gpu_check.md').read_text()

    assert report['device'] == gpu_check.device_name(cpu=True) and report['device']
    assert report['torch'] == torch.__version__ and report['date'][:4].isdigit() and report['mode'] == 'cpu'
    assert report['device'] in md and f"torch {torch.__version__}" in md and report['date'] in md
    assert '| check | figure | target | status |' in md and md in done.stdout  # the table is printed too
    assert [c['name'] for c in report['checks']] == [name for name, _, _ in gpu_check.CHECKS]
    for c in report['checks']:
        assert c['title'] in md
        assert c['status'] == 'pass', c
    checks = {c['name']: c for c in report['checks']}
    # the figures each check promises, on the paths the GPU takes
    assert checks['nanogpt']['figures']['ratio'] > 0 and checks['nanogpt']['figures']['summary']['pairs'] == 1
    assert sorted(p.name for p in nanogpt.iterdir()) == ['configurator.py', 'model.py', 'train.py']  # untouched
    assert checks['let_cost']['figures']['flop_floor'] > 0 and checks['let_cost']['figures']['measured_floor'] > 0
    assert checks['let_cost']['figures']['teacher_forward_ms'] > 0
    assert checks['let_cost']['figures']['modes']['LET after S_stop']['teacher_calls_per_step'] == 0
    for run in ('fsdp', 'fp16'):
        assert checks['smoke']['figures'][run]['finite'] and checks['smoke']['figures'][run]['step_ms'] > 0
    assert len(checks['host_syncs']['figures']['steps']) == 9
    assert [r['step'] for r in checks['host_syncs']['figures']['steps'] if r['released']] == [5]  # S_stop
    assert checks['speedup']['figures']['base_final'] > 0
    assert report['status'] == 'pass' and 'Overall: **pass**' in md and done.returncode == 0


# ----------------------------------------------------------------------------- the budget

def test_a_check_that_does_not_fit_the_time_left_is_skipped_with_the_reason():
    limit, why = gpu_harness.allot(100, [150, 45])
    assert limit is None and why == "needs about 150 s, 100 s of the budget left"
    limit, why = gpu_harness.allot(-3, [10])
    assert limit is None and "0 s of the budget left" in why


def test_the_budget_is_shared_by_need_each_check_getting_at_least_its_own():
    assert gpu_harness.allot(1000, [100, 300]) == (250, None)  # its share: 1000 x 100 / 400
    assert gpu_harness.allot(400, [150, 500, 150]) == (150, None)  # a share of 75 is below its need
    assert gpu_harness.allot(90, [60, 500]) == (60, None)
    assert gpu_harness.allot(80, [50]) == (80, None)  # the last check gets all that is left
    assert gpu_harness.allot(1000, [100, 100], weights=[3, 1]) == (750, None)


def fake_report():
    return {'device': 'a card', 'torch': '2.x', 'cuda': None, 'date': 'today', 'budget_s': 600, 'mode': 'gpu',
            'checks': []}


def test_run_checks_skips_what_does_not_fit_keeps_going_after_a_failure_and_reports_all(tmp_path, monkeypatch):
    calls = []

    def fine(ctx, deadline, figures):
        calls.append('fine')
        figures['x'] = 1
        return [gpu_harness.row('x', '1', '1', 'pass')]

    def broken(ctx, deadline, figures):
        calls.append('broken')
        raise RuntimeError('it broke')

    def absent(ctx, deadline, figures):
        raise gpu_harness.Skip('nothing to compare with')

    def huge(ctx, deadline, figures):
        calls.append('huge')  # never: it does not fit
        return []

    monkeypatch.setattr(gpu_check, 'NEEDS', {'fine': (1, 1), 'broken': (1, 1), 'absent': (1, 1),
                                             'huge': (10 ** 6, 10 ** 6), 'last': (1, 1)})
    checks = [('fine', 'a fine check', fine), ('broken', 'a broken check', broken),
              ('absent', 'an absent check', absent), ('huge', 'a huge check', huge), ('last', 'the last', fine)]
    ctx = types.SimpleNamespace(cpu=False, out=str(tmp_path), logs=str(tmp_path))
    report = fake_report()
    gpu_check.run_checks(ctx, 600, report, checks)

    assert calls == ['fine', 'broken', 'fine']
    by_name = {c['name']: c for c in report['checks']}
    assert list(by_name) == ['fine', 'broken', 'absent', 'huge', 'last']  # none silently dropped
    assert by_name['fine']['status'] == by_name['last']['status'] == 'pass' and by_name['fine']['figures'] == {'x': 1}
    assert by_name['broken']['status'] == 'fail' and 'RuntimeError: it broke' in by_name['broken']['reason']
    assert (tmp_path / 'broken.traceback').exists()
    assert by_name['absent']['status'] == 'skipped' and by_name['absent']['reason'] == 'nothing to compare with'
    assert by_name['huge']['status'] == 'skipped'
    assert by_name['huge']['reason'].startswith('does not fit the budget: needs about 1000000 s')
    assert report['status'] == 'fail'  # a failure outranks the skips
    md = (tmp_path / 'gpu_check.md').read_text()
    assert '| a huge check | does not fit the budget: needs about 1000000 s' in md and '**skipped**' in md
    assert json.loads((tmp_path / 'gpu_check.json').read_text())['checks'][1]['status'] == 'fail'


def test_a_skipped_or_timed_out_check_makes_the_run_incomplete_keeping_what_it_measured(tmp_path, monkeypatch):
    def fine(ctx, deadline, figures):
        return [gpu_harness.row('x', '1', '1', 'pass')]

    def absent(ctx, deadline, figures):
        raise gpu_harness.Skip('no nanoGPT checkout given')

    def slow(ctx, deadline, figures):
        figures['evaluations_so_far'] = {'baseline': [{'iter': 40, 'val_loss': 3.2}]}
        raise gpu_harness.TimedOut('speedup: killed at its time limit')

    monkeypatch.setattr(gpu_check, 'NEEDS', {'fine': (1, 1), 'absent': (1, 1), 'slow': (1, 1)})
    ctx = types.SimpleNamespace(cpu=False, out=str(tmp_path), logs=str(tmp_path))
    for checks, unfinished in (([('fine', 'a fine check', fine), ('absent', 'an absent check', absent)],
                                'an absent check skipped'),
                               ([('fine', 'a fine check', fine), ('slow', 'a slow check', slow)],
                                'a slow check timed out')):
        report = gpu_check.run_checks(ctx, 600, fake_report(), checks)
        assert report['status'] == 'incomplete' and gpu_harness.EXIT_STATUS['incomplete'] not in (0, 1, 2)
        assert f"Overall: **incomplete ({unfinished})**" in (tmp_path / 'gpu_check.md').read_text()
    written = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert written['status'] == 'incomplete'
    slow_entry = written['checks'][1]
    assert slow_entry['status'] == 'timed out' and 'killed at its time limit' in slow_entry['reason']
    assert slow_entry['figures'] == {'evaluations_so_far': {'baseline': [{'iter': 40, 'val_loss': 3.2}]}}
    assert gpu_check.run_checks(ctx, 600, fake_report(), [('fine', 'a fine check', fine)])['status'] == 'pass'


def test_the_default_budget_fits_every_check_at_its_estimated_need(tmp_path):
    """Checks that each take exactly their GPU need (on a clock that only they move): all five run."""
    now = [0.0]
    took = {}

    def taking(name):
        def check(ctx, deadline, figures):
            took[name] = deadline - now[0]
            now[0] += gpu_checks.NEEDS[name][0]
            return [gpu_harness.row(name, '', '', 'pass')]
        return check

    checks = [(name, title, taking(name)) for name, title, _ in gpu_check.CHECKS]
    ctx = types.SimpleNamespace(cpu=False, out=str(tmp_path), logs=str(tmp_path))
    report = gpu_check.run_checks(ctx, gpu_check.BUDGET_S, fake_report(), checks, clock=lambda: now[0])
    assert [c['status'] for c in report['checks']] == ['pass'] * 5 and report['status'] == 'pass'
    assert took == pytest.approx({name: gpu_checks.NEEDS[name][0] for name, _, _ in gpu_check.CHECKS})
    assert gpu_check.BUDGET_S <= 9.5 * 60  # about nine minutes of the card's fifteen
    assert gpu_checks.speedup_steps(gpu_checks.NEEDS['speedup'][0]) >= 100  # check 5's need runs it


def test_a_command_past_its_deadline_is_ended_with_what_it_started(tmp_path):
    ctx = gpu_harness.Context(types.SimpleNamespace(cpu=True, out=str(tmp_path), nanogpt=None))
    child = ("import subprocess, time; p = subprocess.Popen(['sleep', '3600']); print(p.pid, flush=True); "
             "time.sleep(3600)")
    log = tmp_path / 'logs' / 'sleeper.log'
    for limit in (2, 8, 32):  # until the command got as far as starting its child before its deadline
        with pytest.raises(gpu_harness.TimedOut, match='killed at its time limit'):
            ctx.run([sys.executable, '-c', child], 'sleeper', time.monotonic() + limit)
        lines = log.read_text().splitlines()
        if len(lines) > 1:
            break
    pid = int(lines[1])

    def ended():
        try:
            with open(f'/proc/{pid}/stat') as f:
                return f.read().split(')')[1].split()[0] == 'Z'  # a zombie has ended; its parent reaps it
        except FileNotFoundError:
            return True
    give_up = time.monotonic() + 60  # a failure timeout only: the grandchild ends as soon as it is signalled
    while not ended() and time.monotonic() < give_up:
        time.sleep(0.05)
    assert ended()  # the grandchild ended too
    with pytest.raises(gpu_harness.CommandFailed, match=r"(?s)failing exited with status 3.*the last words"):
        ctx.run([sys.executable, '-c', "print('the last words'); raise SystemExit(3)"], 'failing',
                time.monotonic() + 60)


def test_every_command_reads_and_writes_the_compile_cache(tmp_path, monkeypatch):
    for cache in ('TORCHINDUCTOR_FX_GRAPH_CACHE', 'TORCHINDUCTOR_AUTOGRAD_CACHE'):
        monkeypatch.delenv(cache, raising=False)
    ctx = gpu_harness.Context(types.SimpleNamespace(cpu=False, out=str(tmp_path), nanogpt=None))
    assert ctx.env['TORCHINDUCTOR_FX_GRAPH_CACHE'] == ctx.env['TORCHINDUCTOR_AUTOGRAD_CACHE'] == '1'
    monkeypatch.setenv('TORCHINDUCTOR_FX_GRAPH_CACHE', '0')
    ctx = gpu_harness.Context(types.SimpleNamespace(cpu=False, out=str(tmp_path), nanogpt=None))
    assert ctx.env['TORCHINDUCTOR_FX_GRAPH_CACHE'] == '0'  # the user's own choice is kept


def test_the_gpu_modes_commands_are_valid_settings(shakespeare_byte, tmp_path, monkeypatch):
    """What each check runs on a GPU, read by the programs' own parsers here: a misspelt setting must not wait
    for a GPU run to show."""
    from dev.bench import parse_args as bench_args
    from configurator import TrainConfig, check_config, load_config
    from speedup import SpeedupConfig
    monkeypatch.chdir(REPO)
    ctx = gpu_harness.Context(types.SimpleNamespace(cpu=False, out=str(tmp_path), nanogpt='/x/nanoGPT/train.py'))
    commands = []
    monkeypatch.setattr(ctx, 'run', lambda cmd, name, deadline: commands.append((name, cmd)) or '')
    monkeypatch.setattr(gpu_checks, 'smollm2', lambda ctx, config, deadline: None)
    for name, _, check in gpu_check.CHECKS:
        try:
            check(ctx, time.monotonic() + 600, {})
        except (OSError, RuntimeError):
            pass  # the figures of a command that never ran
    assert [name for name, _ in commands] == ['nanogpt', 'let_cost', 'smoke-fsdp', 'smoke-fp16', 'host_syncs',
                                              'speedup']
    cmds = dict(commands)
    for cmd in cmds.values():
        assert cmd[0] == sys.executable and not any(arg.startswith('--device=cpu') for arg in cmd)

    a = bench_nanogpt.parse_args(cmds['nanogpt'][3:])
    assert a.preset == 'gpt2-124m-gpu' and a.max_time > 0

    def train_config(args):
        cfg = load_config(TrainConfig, args)
        check_config(cfg)
        return cfg
    opts, train_args = bench_args(cmds['let_cost'][3:])
    assert train_config(train_args).teacher == 'smollm2-135m' and opts['json']
    fsdp = cmds['smoke-fsdp']
    assert fsdp[1:5] == ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1']
    cfg = train_config(fsdp[fsdp.index('train.py') + 1:])
    assert (cfg.data_parallel, cfg.compile, cfg.let_proj, cfg.teacher) == ('fsdp', True, 'linear', 'smollm2-135m')
    cfg = train_config(cmds['smoke-fp16'][cmds['smoke-fp16'].index('train.py') + 1:])
    assert cfg.dtype == 'float16' and cfg.data_parallel == 'ddp' and cfg.compile is False  # eager: no compile
    syncs = cmds['host_syncs']
    assert syncs[1:3] == ['-m', 'dev.host_syncs'] and syncs[-1].startswith('--json=')
    cfg = train_config(syncs[3:-1])
    assert cfg.teacher == 'smollm2-135m' and cfg.compile is False
    cfg = load_config(SpeedupConfig, cmds['speedup'][2:])
    check_config(cfg)
    assert list(cfg.variants) == ['let'] and cfg.seeds == (1337,) and 100 <= cfg.max_iters <= 700


def test_only_the_runs_of_an_earlier_invocation_are_cleared(tmp_path):
    (tmp_path / 'runs' / 'teacher').mkdir(parents=True)
    with pytest.raises(SystemExit) as e:
        gpu_check.clear_runs(str(tmp_path))  # not this script's: kept, and the --out refused
    assert e.value.code == 2 and (tmp_path / 'runs' / 'teacher').is_dir()
    (tmp_path / 'gpu_check.json').write_text('{}')
    gpu_check.clear_runs(str(tmp_path))
    assert not (tmp_path / 'runs').exists()


def test_a_timing_target_is_judged_on_a_gpu_and_only_reported_on_a_cpu():
    assert gpu_harness.judged(True, cpu=False) == 'pass' and gpu_harness.judged(False, cpu=False) == 'fail'
    assert gpu_harness.judged(False, cpu=True) == 'not judged (CPU)'


def test_speedup_runs_as_many_steps_as_two_runs_fit_or_none():
    assert gpu_checks.speedup_steps(400) == 700  # 1,700 would fit: capped at the config's own length
    assert gpu_checks.speedup_steps(100) == 200  # (50 - 30) / 0.1
    assert gpu_checks.speedup_steps(70) == 0  # 50 steps would fit: too few to compare


# ----------------------------------------------------------------------------- host syncs

def test_every_way_of_waiting_is_counted_between_optimizer_steps_and_the_patches_are_undone():
    original = torch.Tensor.item
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.AdamW([p], fused=True)
    t = torch.tensor([1.5])
    with host_syncs.recording(cuda_warnings=False) as rec:
        t.item(), t.tolist(), bool(t), float(t), int(t), t.numpy(), t.cpu()  # .cpu() of a CPU tensor: no copy
        p.grad = torch.ones(2)
        opt.step()
        if t:
            pass
        opt.step()
        t.item()
    assert torch.Tensor.item is original and 'item' not in vars(torch.Tensor)
    steps, tail = host_syncs.per_step(rec, log_interval=2, eval_interval=100)
    assert rec.device_type == 'cpu'
    assert [(s['step'], s['syncs'], s['logged']) for s in steps] == [(0, 6, True), (1, 1, False)]
    assert {call.split()[0] for call in steps[0]['calls']} == {'item', 'tolist', '__bool__', '__float__', '__int__',
                                                               'numpy'}
    assert all(call.split()[1].startswith('tests/test_gpu_check.py:') for call in steps[0]['calls'])
    assert tail['syncs'] == 1


SYNC_RUN = dict(TINY, max_iters=10, lr_decay_iters=10, log_interval=4, eval_interval=8)


@pytest.fixture(scope='module')
def plain_syncs(shakespeare_byte, tmp_path_factory):
    """dev.host_syncs on a plain run as a user runs it: its JSON list."""
    tmp = tmp_path_factory.mktemp('syncs')
    out = tmp / 'syncs.json'
    args = to_args(dict(SYNC_RUN, dataset=shakespeare_byte, out_dir=str(tmp / 'run')))
    done = subprocess.run([sys.executable, '-m', 'dev.host_syncs', *args, f'--json={out}'], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'steps that neither log, evaluate nor release the teacher: ' in done.stdout
    return json.loads(out.read_text())


@pytest.fixture(scope='module')
def let_syncs(shakespeare_byte, teacher_ckpt, tmp_path_factory):
    """host_syncs.count_syncs on a LET run through S_stop, in this process: its records."""
    tmp = tmp_path_factory.mktemp('let-syncs')
    args = to_args(dict(SYNC_RUN, dataset=shakespeare_byte, out_dir=str(tmp / 'run'), teacher=teacher_ckpt,
                        let_proj='linear', let_lambda=1.0, let_layers=(0,), let_stop=5))
    steps, tail, device_type = host_syncs.count_syncs(args)
    assert device_type == 'cpu' and tail['syncs'] >= 1  # the final log and evaluation
    return steps


@pytest.mark.parametrize('run', ['plain_syncs', 'let_syncs'])
def test_host_syncs_gives_one_record_per_step_and_the_steps_that_log_wait(run, request):
    steps = request.getfixturevalue(run)
    assert [r['step'] for r in steps] == list(range(10))
    assert [r['logged'] for r in steps] == [s % 4 == 0 for s in range(10)]
    assert [r['evaluated'] for r in steps] == [s % 8 == 0 for s in range(10)]
    assert [r['released'] for r in steps] == [run == 'let_syncs' and s == 5 for s in range(10)]  # S_stop = 5
    for r in steps:
        assert r['syncs'] == sum(r['calls'].values())
        if r['logged']:
            assert r['syncs'] >= 1, r  # reading the losses for the log line waits, by design


@pytest.mark.parametrize('run', ['plain_syncs', 'let_syncs'])
def test_a_training_step_that_does_not_log_waits_for_the_device_zero_times(run, request):
    waiting = [r for r in request.getfixturevalue(run) if not r['logged'] and r['syncs']]
    assert waiting == []


def test_check_4_counts_the_cuda_clocks_wait_at_s_stop_as_the_release_steps_not_a_quiet_steps(
        shakespeare_byte, teacher_ckpt, tmp_path, monkeypatch):
    """On CUDA train.py's Stopwatch synchronises when it stops at S_stop, in a step that neither logs nor
    evaluates. Here the CPU's Stopwatch synchronises as CUDA's does, through a stand-in torch.cuda.synchronize
    that host_syncs counts: the wait is the release step's, and check 4's judgement passes."""
    assert Stopwatch(torch.device('cuda')).synchronizes() and not Stopwatch(torch.device('cpu')).synchronizes()
    waits = []
    monkeypatch.setattr(Stopwatch, 'synchronizes', lambda self: True)
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda device=None: waits.append(device))
    args = to_args(dict(SYNC_RUN, dataset=shakespeare_byte, out_dir=str(tmp_path / 'run'), teacher=teacher_ckpt,
                        let_proj='linear', let_lambda=1.0, let_layers=(0,), let_stop=5))
    steps, _, _ = host_syncs.count_syncs(args, cuda_warnings=False)
    assert waits  # every stop of the clock: the log lines' and S_stop's
    release = steps[5]
    assert release['released'] and not release['logged'] and not release['evaluated']
    assert [call.split()[0] for call in release['calls']] == ['torch.cuda.synchronize']
    assert next(iter(release['calls'])).split()[1].startswith('components/runtime.py:')
    figures = {}
    rows = gpu_checks.judge_host_syncs(steps, figures)
    assert rows[0]['status'] == 'pass' and rows[0]['value'] == '0 in 6 steps', rows
    assert figures['quiet_steps'] == 6 and figures['quiet_steps_waiting'] == 0


# ----------------------------------------------------------------------------- bench_nanogpt.py's presets

def test_bench_nanogpt_keeps_its_cpu_setting_by_default():
    a = bench_nanogpt.parse_args(['--nanogpt=x/train.py'])
    assert a.model_flags == ['--device=cpu', '--compile=False', '--dtype=float32', '--n_layer=4', '--n_head=4',
                             '--n_embd=192', '--block_size=128', '--batch_size=16', '--bias=True', '--dropout=0.0',
                             '--gradient_accumulation_steps=1', '--eval_interval=100000', '--eval_iters=1',
                             '--log_interval=1']
    assert (a.warmup, a.steps, a.repeats, a.quiet_busy, a.vocab_size) == (10, 30, 8, 0.1, 256)
    assert a.nanogpt_dataset == 'shakebyte' and a.max_time is None


def test_bench_nanogpt_gpu_preset_is_gpt2_124m_in_bf16_compiled_and_single_settings_override_it():
    a = bench_nanogpt.parse_args(['--nanogpt=x/train.py', '--preset=gpt2-124m-gpu'])
    assert a.settings == dict(device='cuda', compile=True, dtype='bfloat16', n_layer=12, n_head=12, n_embd=768,
                              block_size=1024, batch_size=16, vocab='gpt2')
    assert '--gradient_accumulation_steps=1' in a.model_flags and '--bias=True' in a.model_flags
    assert a.vocab_size == 50304 and a.nanogpt_dataset == 'shakebyte50304' and a.quiet_busy == 1.0
    a = bench_nanogpt.parse_args(['--nanogpt=x/train.py', '--preset=gpt2-124m-gpu', '--compile=False',
                                  '--n_layer=2', '--repeats=5', '--max_time=120'])
    assert '--compile=False' in a.model_flags and '--n_layer=2' in a.model_flags and '--n_embd=768' in a.model_flags
    assert (a.repeats, a.max_time) == (5, 120)


def test_ours_reads_the_byte_data_under_gpt2s_vocabulary(shakespeare_byte, tmp_path):
    from data.common import check_dataset
    d = bench_nanogpt.ours_dataset_with_vocab(shakespeare_byte, 50304, str(tmp_path))
    meta = check_dataset(d)
    assert meta['vocab_size'] == 50304 and os.path.realpath(os.path.join(d, 'train.bin')) == \
        os.path.realpath(os.path.join(shakespeare_byte, 'train.bin'))
    bench_nanogpt.ensure_nanogpt_dataset(str(tmp_path / 'nanogpt'), 'shakebyte50304', shakespeare_byte, 50304)
    assert not (tmp_path / 'nanogpt' / 'data' / 'shakebyte50304' / 'meta.pkl').exists()  # nanoGPT: 50,304


# ----------------------------------------------------------------------------- check 1 and bench_nanogpt.py

def pair(nanogpt_own, nanogpt_loop, ours_own, ours_loop, steps=20):
    """One pair of bench_nanogpt's runs with steady step times (ms): each trainer's own, and between its lines."""
    side = lambda own, loop: {'self_ms': [own] * steps, 'loop_ms': [loop] * steps, 'self_med': own,
                              'loop_med': loop}
    return {'repeat': 0, 'nanogpt': side(nanogpt_own, nanogpt_loop), 'ours': side(ours_own, ours_loop),
            'ratio_self': ours_own / nanogpt_own, 'ratio_loop': ours_loop / nanogpt_loop}


def test_check_1_judges_the_step_time_of_the_same_definition_on_both_sides():
    """nanoGPT's own step time holds its log line and ours does not: ours 1% faster by the trainers' own clocks
    and 3% slower between printed step lines is 3% slower."""
    a = bench_nanogpt.parse_args(['--nanogpt=x/train.py', '--preset=gpt2-124m-gpu'])
    results = [pair(100.0, 100.0, 99.0, 103.0)]
    bench_nanogpt.evaluate(results, a)
    rep = {'settings': a.settings, 'stopped_early': None, 'summary': bench_nanogpt.summary(results),
           'results': results}
    figures = {}
    rows = gpu_checks.judge_nanogpt(rep, False, figures)
    assert figures['ratio'] == pytest.approx(1.03) and rows[0]['status'] == 'fail'
    assert figures['own_step_ratio'] == pytest.approx(0.99) and rows[1]['status'] == 'info'


def test_a_run_past_its_time_limit_is_ended_as_out_of_time(tmp_path):
    with pytest.raises(bench_nanogpt.OutOfTime, match="sleeper's run ended at its time limit"):
        bench_nanogpt.run_proc([sys.executable, '-c', 'import time; time.sleep(3600)'], str(tmp_path), ENV, 1,
                               'sleeper')


def test_bench_nanogpt_ended_by_its_time_limit_writes_the_pairs_before_it(shakespeare_byte, nanogpt, tmp_path,
                                                                            monkeypatch):
    real, runs = bench_nanogpt.run_nanogpt, []

    def second_out_of_time(a, env, timeout):
        runs.append(timeout)
        if len(runs) == 2:
            raise bench_nanogpt.OutOfTime("nanoGPT's run ended at its time limit (5 s)")
        return real(a, env, timeout)
    monkeypatch.setattr(bench_nanogpt, 'run_nanogpt', second_out_of_time)
    out = tmp_path / 'nanogpt.json'
    bench_nanogpt.main([f'--nanogpt={nanogpt / "train.py"}', '--n_layer=2', '--n_head=2', '--n_embd=64',
                        '--block_size=64', '--batch_size=4', '--warmup=2', '--steps=5', '--repeats=2',
                        '--quiet_busy=1', '--threads=1', f'--json={out}'])
    rep = json.loads(out.read_text())
    assert rep['summary']['pairs'] == 1 and rep['results'][0]['ratio_loop'] > 0
    assert rep['stopped_early'] == "pair 2 not finished: nanoGPT's run ended at its time limit (5 s)"
    assert sorted(p.name for p in nanogpt.iterdir()) == ['configurator.py', 'model.py', 'train.py']  # untouched


def test_a_tool_ended_at_the_deadline_leaves_the_figures_it_had_written(tmp_path):
    def run(cmd, name, deadline):
        (tmp_path / 'nanogpt.json').write_text(json.dumps({'summary': {'pairs': 1}}))
        raise gpu_harness.TimedOut(f"{name}: killed at its time limit")
    ctx = types.SimpleNamespace(out=str(tmp_path), run=run)
    figures = {}
    with pytest.raises(gpu_harness.TimedOut):
        gpu_checks.run_tool(ctx, 'bench_nanogpt', [], 'nanogpt.json', 'nanogpt', 0, figures)
    assert figures == {'json': str(tmp_path / 'nanogpt.json'), 'so_far': {'summary': {'pairs': 1}}}
