"""bench.py: LET's cost measured on train.py's own steps."""

import json
import re

import pytest
import torch

import dev.bench as bench
from dev import gpu_checks
from model import GPT, GPTConfig
from teacher import load_teacher

# the student is TINY (2 blocks x 32 wide); the teacher is 48 wide, so the FLOP floor is not a round number
STUDENT = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, gradient_accumulation_steps=2,
               device='cpu', compile=False, let_layers=(0,))
HEADER = ['mode', 'step ms', 'step ms IQR', 'tok/s', 'peak RSS GB', 'MFU student', 'MFU with teacher',
          'teacher calls/step']


def cells(line):
    return re.split(r'\s{2,}', line.strip())


def test_bench_runs_a_tiny_student_and_teacher_and_prints_every_figure(shakespeare_byte, teacher_ckpt, tmp_path,
                                                                       capsys, monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # the train.py children: no thread contention on a busy test machine
    args = [f'--{k}={v}' for k, v in dict(STUDENT, dataset=shakespeare_byte, teacher=teacher_ckpt).items()]
    rep = bench.main(args + ['--steps=3', '--warmup=1', '--json', str(tmp_path / 'bench.json')])
    out = capsys.readouterr().out
    print(out)  # shown when the test fails
    lines = out.splitlines()

    assert "machine: " in out and "device cpu" in out and f"torch {torch.__version__}" in out
    assert "dtype float32" in out and "compile off" in out
    assert "256 tokens/iter | 1 warm-up + 3 measured steps | 1 repeat(s)" in out  # 4 x 2 micro-batches x 32

    table = lines[next(i for i, line in enumerate(lines) if line.startswith('mode')):][:4]
    assert cells(table[0]) == HEADER
    calls_per_step = {'plain': 0, 'LET': 2, 'LET after S_stop': 0}  # 2 micro-batches: 2 teacher forwards per step
    for line, (mode, calls) in zip(table[1:], calls_per_step.items()):
        row = dict(zip(HEADER, cells(line)))
        assert row['mode'] == mode
        step_ms, tok_s = float(row['step ms']), float(row['tok/s'].replace(',', ''))
        q1, q3 = map(float, row['step ms IQR'].split('-'))
        assert 0 < q1 <= step_ms <= q3
        assert tok_s == pytest.approx(256 / (step_ms / 1000), rel=0.01)  # 3 steps: the median step gives both
        if mode != 'LET after S_stop':  # that row's steps run in the LET process
            assert float(row['peak RSS GB']) > 0.05  # a whole Python process with torch
        assert row['MFU student'] == row['MFU with teacher'] == 'n/a'
        assert float(row['teacher calls/step']) == calls
    assert "MFU: n/a (unknown peak on this device" in out

    figure = lambda label: float(re.search(re.escape(label) + r' ([+-]\d+\.\d)%', out).group(1)) / 100
    # the FLOP floor: the teacher's forward (no head) over the student's training step (3 forwards), per token
    student = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=256))
    teacher = load_teacher(teacher_ckpt).model
    floor = teacher.forward_flops_per_token(32, head=False) / (3 * student.forward_flops_per_token(32))
    assert rep['flop_floor'] == pytest.approx(floor)
    assert figure("FLOP floor (teacher forward / student training step):") == pytest.approx(floor, abs=0.0006)
    modes = rep['modes']
    let_overhead = figure("LET overhead while the teacher runs:")
    assert let_overhead == pytest.approx(modes['LET']['step_ms'] / modes['plain']['step_ms'] - 1, abs=0.0006)
    after = figure("LET overhead after S_stop:")
    assert after == pytest.approx(modes['LET after S_stop']['step_ms'] / modes['plain']['step_ms'] - 1, abs=0.0006)
    assert "teacher memory: not measured: RSS is not informative on CPU" in out
    # the teacher's forward alone, timed in this process: the floor at the efficiencies measured
    assert rep['teacher_forward_ms'] > 0 and rep['teacher_mfu'] is None  # no peak on a CPU
    assert rep['measured_floor'] == pytest.approx(rep['teacher_forward_ms'] * 2 / modes['plain']['step_ms'])
    assert figure("measured floor (the teacher's forwards of a step / the plain step):") == pytest.approx(
        rep['measured_floor'], abs=0.0006)
    assert f"the teacher's forward alone: {rep['teacher_forward_ms']:.2f} ms x 2 per step, MFU n/a" in out

    with open(tmp_path / 'bench.json') as f:
        assert json.load(f)['modes']['LET']['teacher_calls_per_step'] == 2


def fake_run(order, held_gb=1.5, plain_gb=1.0, let_ms=11.0):
    """Stands in for run_train: the records train.py would log on a GPU where a 10 ms step takes let_ms with the
    teacher, whose FLOPs are 10% of the step's and which holds 0.5 GB, with a drift of 1% per repeat that the
    interleaving must cancel."""
    def run(train_args, settings, out_dir):
        mode = 'plain' if settings.get('teacher') == '' else 'LET'
        order.append(mode)
        drift = 1 + 0.01 * order.count(mode)
        records, calls, peak = [], 0, 0.0
        for it in range(1, settings['max_iters'] + 1):
            with_teacher = mode != 'plain' and it - 1 < settings['let_stop']
            calls += with_teacher
            dt = (let_ms if with_teacher else 10.0) * drift
            mem = held_gb if with_teacher else plain_gb
            peak = max(peak, mem + 0.25)
            records.append({'event': 'train', 'iter': it, 'dt_ms': dt, 'tok_per_s': 1000 / (dt / 1000),
                            'mfu': 300 / dt / 1000, 'mfu_with_teacher': (330 if with_teacher else 300) / dt / 1000,
                            'flops_student': 300, 'flops_teacher': 30 if with_teacher else 0,
                            'lambda': 0.1 if with_teacher else 0.0, 'teacher_calls': calls,
                            'cuda_mem_gb': mem, 'cuda_peak_gb': peak})
        return records, "teacher: t (134.5M parameters, width 576, tokenizer smollm2)\n", 0.0
    return run


def on_an_h100(cfg):
    return {'device': 'cuda', 'device_type': 'cuda', 'device_name': 'NVIDIA H100 80GB HBM3',
            'torch': torch.__version__, 'dtype': 'bfloat16', 'compile': True}


def test_modes_interleave_and_the_cuda_figures_add_up(teacher_ckpt, monkeypatch, capsys):
    monkeypatch.setattr(bench, 'environment', on_an_h100)
    order, so_far = [], []
    rep = bench.bench([f'--teacher={teacher_ckpt}'], steps=5, warmup=2, repeats=2, run=fake_run(order),
                      time_teacher=lambda cfg, env, steps, warmup: 1.015, progress=so_far.append)
    bench.print_report(rep)
    out = capsys.readouterr().out
    assert order == ['plain', 'LET'] * 2  # ABAB: drift hits both alike
    # after each run, the figures so far: a bench ended early keeps them
    assert [list(f['modes']) for f in so_far] == [['plain']] + [['plain', 'LET', 'LET after S_stop']] * 3
    assert 'let_overhead' not in so_far[0] and 'measured_floor' not in so_far[-1]  # the teacher alone comes last
    assert rep['let_overhead'] == pytest.approx(0.10)
    assert rep['let_overhead_per_repeat'] == pytest.approx([0.10, 0.10])
    assert rep['after_stop_overhead'] == pytest.approx(0.0)
    assert rep['flop_floor'] == pytest.approx(0.10)
    assert rep['modes']['LET']['teacher_calls_per_step'] == 1
    assert rep['modes']['LET after S_stop']['teacher_calls_per_step'] == 0
    assert "LET overhead while the teacher runs: +10.0% step time (per repeat: +10.0%, +10.0%)" in out
    assert "FLOP floor (teacher forward / student training step): +10.0%" in out
    # the teacher's forward alone: 1.015 ms of the plain step's 10.15 (the median of 10.1 and 10.2)
    assert rep['measured_floor'] == pytest.approx(0.10) and rep['teacher_forward_ms'] == 1.015
    assert rep['teacher_mfu'] == pytest.approx(rep['modes']['plain']['mfu'], rel=1e-3)  # the student's efficiency
    assert "measured floor (the teacher's forwards of a step / the plain step): +10.0%" in out
    assert ("the teacher's forward alone: 1.01 ms x 1 per step, MFU 3.0%; the plain step: 10.15 ms, MFU 3.0%"
            in out)
    assert "LET overhead after S_stop: +0.0% step time (per repeat: +0.0%, +0.0%)" in out
    assert ("teacher memory: CUDA allocated 1.500 GB at the last step with the teacher, 1.000 GB after S_stop: "
            "0.500 GB returned (the teacher's weights: 0.251 GB)") in out
    row = dict(zip(HEADER, cells(next(line for line in out.splitlines() if line.startswith('LET  ')))))
    assert row['MFU student'] == '2.7%' and row['MFU with teacher'] == '3.0%'  # 300 / 330 per 11 ms, from records


def test_lets_overhead_is_judged_against_the_teachers_measured_forward_and_its_flop_floor_is_information(
        teacher_ckpt, monkeypatch):
    """A teacher with a tenth of the student step's FLOPs that runs at 0.8 of the student's fraction of peak takes
    12.5% of the plain step, not 10%. A LET step that costs that and half a point more (its loss and projector) is
    within a point of its measured floor, though 3 points over its FLOP floor."""
    monkeypatch.setattr(bench, 'environment', on_an_h100)
    rep = bench.bench([f'--teacher={teacher_ckpt}'], steps=5, warmup=2, run=fake_run([], let_ms=11.3),
                      time_teacher=lambda cfg, env, steps, warmup: 1.25 * 1.01)  # the first repeat's drift
    assert rep['teacher_mfu'] == pytest.approx(0.8 * rep['modes']['plain']['mfu'])
    assert rep['measured_floor'] == pytest.approx(0.125) and rep['let_overhead'] == pytest.approx(0.13)
    rows = {r['figure']: r for r in gpu_checks.judge_let_cost(rep, False, {})}
    measured = rows["LET's overhead over its measured floor"]
    assert measured['value'].startswith('+0.5 points') and measured['status'] == 'pass'
    flop = rows["LET's overhead over its FLOP floor"]
    assert flop['value'].startswith('+3.0 points') and flop['status'] == 'info'
    slower = bench.bench([f'--teacher={teacher_ckpt}'], steps=5, warmup=2, run=fake_run([], let_ms=11.5),
                         time_teacher=lambda cfg, env, steps, warmup: 1.25 * 1.01)
    rows = {r['figure']: r for r in gpu_checks.judge_let_cost(slower, False, {})}
    assert rows["LET's overhead over its measured floor"]['status'] == 'fail'  # 2.5 points the code's own


def test_without_a_teacher_only_the_plain_row_is_measured(capsys):
    order = []
    rep = bench.bench(["--teacher=''"], steps=3, warmup=1, run=fake_run(order))
    bench.print_report(rep)
    out = capsys.readouterr().out
    assert order == ['plain'] and list(rep['modes']) == ['plain']
    assert "LET: no teacher" in out and "overhead" not in out


def test_a_missing_teacher_checkpoint_names_the_command_that_trains_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main([f'--teacher={tmp_path}/out-teacher/ckpt.pt'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"teacher checkpoint {tmp_path}/out-teacher/ckpt.pt does not exist" in err
    assert f"python train.py --out_dir={tmp_path}/out-teacher" in err
