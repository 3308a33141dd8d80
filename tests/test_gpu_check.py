"""dev/gpu_check.py (the one-command GPU acceptance run) in its --cpu mode, its budget, dev/host_syncs.py, and
bench_nanogpt.py's presets: the logic a GPU run depends on, exercised where there is no GPU."""

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
from configurator import to_args
from dev import gpu_check, gpu_checks, gpu_harness, host_syncs


# ----------------------------------------------------------------------------- the whole script

def test_the_cpu_mode_runs_every_check_end_to_end_and_writes_both_reports(shakespeare_byte, tmp_path):
    out = tmp_path / 'check'
    done = subprocess.run([sys.executable, '-m', 'dev.gpu_check', '--cpu', f'--out={out}'], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)
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
        assert c['status'] == 'pass' or (c['status'] == 'skipped' and c['reason']), c
    checks = {c['name']: c for c in report['checks']}
    assert checks['nanogpt']['status'] == 'skipped' and '--nanogpt' in checks['nanogpt']['reason']
    for name in ('let_cost', 'smoke', 'speedup'):
        assert checks[name]['status'] == 'pass', checks[name]
    # the figures each check promises, on the paths the GPU takes
    assert checks['let_cost']['figures']['flop_floor'] > 0
    assert checks['let_cost']['figures']['modes']['LET after S_stop']['teacher_calls_per_step'] == 0
    for run in ('fsdp', 'fp16'):
        assert checks['smoke']['figures'][run]['finite'] and checks['smoke']['figures'][run]['step_ms'] > 0
    assert len(checks['host_syncs']['figures']['steps']) == 9
    assert checks['speedup']['figures']['base_final'] > 0
    assert checks['host_syncs']['status'] == 'pass', checks['host_syncs']['rows']  # needs a sync-free train.py
    assert done.returncode == 0


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


def test_run_checks_skips_what_does_not_fit_keeps_going_after_a_failure_and_reports_all(tmp_path, monkeypatch):
    calls = []

    def fine(ctx, deadline):
        calls.append('fine')
        return {'x': 1}, [gpu_harness.row('x', '1', '1', 'pass')]

    def broken(ctx, deadline):
        calls.append('broken')
        raise RuntimeError('it broke')

    def absent(ctx, deadline):
        raise gpu_harness.Skip('nothing to compare with')

    def huge(ctx, deadline):
        calls.append('huge')  # never: it does not fit
        return {}, []

    monkeypatch.setattr(gpu_check, 'NEEDS', {'fine': (1, 1), 'broken': (1, 1), 'absent': (1, 1),
                                             'huge': (10 ** 6, 10 ** 6), 'last': (1, 1)})
    checks = [('fine', 'a fine check', fine), ('broken', 'a broken check', broken),
              ('absent', 'an absent check', absent), ('huge', 'a huge check', huge), ('last', 'the last', fine)]
    ctx = types.SimpleNamespace(cpu=False, out=str(tmp_path), logs=str(tmp_path))
    report = {'device': 'a card', 'torch': '2.x', 'cuda': None, 'date': 'today', 'budget_s': 600, 'mode': 'gpu',
              'checks': []}
    gpu_check.run_checks(ctx, 600, report, checks)

    assert calls == ['fine', 'broken', 'fine']
    by_name = {c['name']: c for c in report['checks']}
    assert list(by_name) == ['fine', 'broken', 'absent', 'huge', 'last']  # none silently dropped
    assert by_name['fine']['status'] == by_name['last']['status'] == 'pass'
    assert by_name['broken']['status'] == 'fail' and 'RuntimeError: it broke' in by_name['broken']['reason']
    assert (tmp_path / 'broken.traceback').exists()
    assert by_name['absent']['status'] == 'skipped' and by_name['absent']['reason'] == 'nothing to compare with'
    assert by_name['huge']['status'] == 'skipped'
    assert by_name['huge']['reason'].startswith('does not fit the budget: needs about 1000000 s')
    assert report['status'] == 'fail'
    md = (tmp_path / 'gpu_check.md').read_text()
    assert '| a huge check | does not fit the budget: needs about 1000000 s' in md and '**skipped**' in md
    assert json.loads((tmp_path / 'gpu_check.json').read_text())['checks'][1]['status'] == 'fail'


def test_a_command_past_its_deadline_is_ended_with_what_it_started(tmp_path):
    ctx = gpu_harness.Context(types.SimpleNamespace(cpu=True, out=str(tmp_path), nanogpt=None))
    child = ("import subprocess, time; p = subprocess.Popen(['sleep', '60']); print(p.pid, flush=True); "
             "time.sleep(60)")
    with pytest.raises(gpu_harness.TimedOut, match='killed at its time limit'):
        ctx.run([sys.executable, '-c', child], 'sleeper', time.monotonic() + 2)
    pid = int((tmp_path / 'logs' / 'sleeper.log').read_text().splitlines()[1])
    time.sleep(0.5)
    stat = f'/proc/{pid}/stat'
    assert not os.path.exists(stat) or open(stat).read().split(')')[1].split()[0] == 'Z'  # the grandchild ended too
    with pytest.raises(gpu_harness.CommandFailed, match=r"(?s)failing exited with status 3.*the last words"):
        ctx.run([sys.executable, '-c', "print('the last words'); raise SystemExit(3)"], 'failing',
                time.monotonic() + 60)


def test_the_gpu_modes_commands_are_valid_settings(shakespeare_byte, tmp_path, monkeypatch):
    """What each check runs on a GPU, read by the programs' own parsers here: a misspelt setting must not wait
    for a GPU session to show."""
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
            check(ctx, time.monotonic() + 600)
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
    assert cfg.dtype == 'float16' and cfg.data_parallel == 'ddp'
    syncs = cmds['host_syncs']
    assert syncs[1:3] == ['-m', 'dev.host_syncs'] and syncs[-1].startswith('--json=')
    assert train_config(syncs[3:-1]).teacher == 'smollm2-135m'
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
    assert gpu_checks.speedup_steps(400) == 700  # 1,100 would fit: capped at the config's own length
    assert gpu_checks.speedup_steps(260) == 400  # (130 - 90) / 0.1
    assert gpu_checks.speedup_steps(190) == 0  # 50 steps would fit: too few to compare


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
    assert 'steps that neither log nor evaluate: ' in done.stdout
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
    for r in steps:
        assert r['syncs'] == sum(r['calls'].values())
        if r['logged']:
            assert r['syncs'] >= 1, r  # reading the losses for the log line waits, by design


@pytest.mark.parametrize('run', ['plain_syncs', 'let_syncs'])
def test_a_training_step_that_does_not_log_waits_for_the_device_zero_times(run, request):
    waiting = [r for r in request.getfixturevalue(run) if not r['logged'] and r['syncs']]
    assert waiting == []


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
