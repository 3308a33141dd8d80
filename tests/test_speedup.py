"""speedup.py and its report (speedup_report.py): the arithmetic on curves whose answers are known,
the runs' settings, and the whole check end to end."""

import dataclasses
import os

import pytest
import torch

import speedup
import speedup_report
from components.checkpoint import plain
from speedup_report import aggregate, compare, fmt_stat, interp_at, steps_to_reach
from configurator import ConfigError, TrainConfig, load_config
from conftest import REPO, TINY, read_log
from speedup import job_slots, slot_env, visible_gpus


def evals(points):
    """Eval records from (iter, val_loss, train_time) triples."""
    return [{'iter': i, 'val_loss': v, 'train_time': t} for i, v, t in points]


# ------------------------------------------------------------------ arithmetic

def test_the_crossing_is_interpolated_between_the_two_evaluations_around_it():
    curve = [(0, 5.0), (10, 3.0), (20, 2.0)]
    assert steps_to_reach(curve, 2.5) == pytest.approx(15)   # halfway from 3.0 at step 10 to 2.0 at step 20
    assert steps_to_reach(curve, 3.0) == 10                  # on an evaluation
    assert steps_to_reach(curve, 1.9) is None
    # the first crossing counts, even if the curve goes back up afterwards
    assert steps_to_reach([(0, 5.0), (10, 2.0), (20, 3.0), (30, 1.0)], 2.5) == pytest.approx(50 / 6)
    assert interp_at(curve, 5) == pytest.approx(4.0)
    assert interp_at(curve, 25) is None


def test_speedup_in_steps_and_in_time_with_and_without_the_teachers_training():
    baseline = evals([(0, 5.0, 0.0), (10, 3.0, 1.0), (20, 2.2, 2.0), (30, 2.0, 3.0)])
    # ahead, but its steps cost 1.5x while the teacher runs (to S_stop = 10), then the same as the baseline's
    variant = evals([(0, 5.0, 0.0), (10, 2.5, 1.5), (20, 1.5, 2.5), (30, 1.4, 3.5)])
    r = compare(baseline, variant, teacher_time=1.0, teacher_stop=10)
    assert r['target'] == 2.0 and r['base_steps'] == 30 and r['base_time'] == 3.0
    assert r['steps'] == pytest.approx(15)            # 2.0 is halfway from 2.5 (step 10) to 1.5 (step 20)
    assert r['step_speedup'] == pytest.approx(2.0)
    assert r['time'] == pytest.approx(2.0)            # train_time interpolated at step 15
    assert r['time_speedup'] == pytest.approx(1.5)    # half the steps, but the first ones were dearer
    assert r['time_speedup_with_teacher'] == pytest.approx(1.0)  # 3.0 / (2.0 + 1.0)
    assert r['teacher_step_ratio'] == pytest.approx(1.5)
    assert r['plain_step_ratio'] == pytest.approx(1.0)  # from the first evaluation after S_stop (20) to the end
    assert r['final_gap'] == pytest.approx(-0.6)


def test_a_busy_machine_cannot_pass_for_a_wall_clock_speedup():
    """Other work starts partway through the baseline's run, and its later steps take twice as long: LET's
    wall-clock speedup (3.18x) comes out above its step speedup (2.0x). The report says it measures the load,
    from the control (identical work after S_stop took 0.5x the baseline's time), next to the figure."""
    baseline = evals([(0, 5.0, 0.0), (10, 3.0, 1.0), (20, 2.2, 3.0), (30, 2.0, 5.0), (40, 1.9, 7.0)])
    variant = evals([(0, 5.0, 0.0), (10, 2.5, 1.2), (20, 1.9, 2.2), (30, 1.8, 3.2), (40, 1.7, 4.2)])
    r = compare(baseline, variant, teacher_stop=10)
    assert r['step_speedup'] == pytest.approx(2.0) and r['time_speedup'] > r['step_speedup']
    assert r['plain_step_ratio'] == pytest.approx(0.5)
    assert r['load'] == "the same work after S_stop took 0.50x the baseline's time"
    line = speedup_report.headline('let', [r])
    assert "wall-clock speedup 3.18x [the wall-clock figure measures the machine's load, not the method" in line
    assert "0.50x the baseline's time" in speedup_report.seed_table({'let': [r]}, [1337])
    # the control at 1x, yet more gained in time than in steps by a run whose steps also run a teacher
    quiet = evals([(0, 5.0, 0.0), (10, 3.0, 2.0), (20, 2.2, 3.0), (30, 2.0, 4.0), (40, 1.9, 5.0)])
    r = compare(quiet, variant, teacher_stop=10)
    assert r['plain_step_ratio'] == pytest.approx(1.0) and r['time_speedup'] > r['step_speedup']
    assert 'more in time than in steps' in r['load'] or 'larger speedup in time' in r['load']
    assert 'measures the machine\'s load' in speedup_report.headline('let', [r])
    # the same runs on a quiet machine: the figure stands alone
    honest = evals([(0, 5.0, 0.0), (10, 2.5, 1.5), (20, 1.9, 2.5), (30, 1.8, 3.5), (40, 1.7, 4.5)])
    r = compare(quiet, honest, teacher_stop=10)
    assert r['load'] is None and r['time_speedup'] <= r['step_speedup']
    assert '[' not in speedup_report.headline('let', [r])


def test_a_variant_that_never_reaches_the_target_gets_no_speedup_only_its_gap():
    baseline = evals([(0, 5.0, 0.0), (10, 3.0, 1.0), (20, 2.0, 2.0)])
    variant = evals([(0, 5.0, 0.0), (10, 3.5, 1.0), (20, 2.4, 2.0)])
    r = compare(baseline, variant, teacher_time=1.0)
    assert r['steps'] is None and r['time'] is None
    assert r['step_speedup'] is None and r['time_speedup'] is None and r['time_speedup_with_teacher'] is None
    assert r['final_gap'] == pytest.approx(0.4)
    table = speedup_report.speedup_table({'let': [r]}, charged=True)
    assert table.splitlines()[3].count('not reached') == 5  # steps, time and the three speedups
    assert 'does not reach' in speedup_report.headline('let', [r])


def test_the_gap_is_read_at_fractions_of_the_baselines_steps():
    baseline = evals([(0, 4.0, 0), (40, 2.0, 4)])
    variant = evals([(0, 4.0, 0), (20, 2.5, 2), (40, 1.8, 4)])
    r = compare(baseline, variant)
    # baseline at 10, 20, 30, 40: 3.5, 3.0, 2.5, 2.0; variant: 3.25, 2.5, 2.15, 1.8
    assert [r[f'gap_{f:g}'] for f in speedup_report.FRACTIONS] == pytest.approx([-0.25, -0.5, -0.35, -0.2])


def test_seeds_aggregate_to_mean_sample_std_and_range_counting_those_that_miss():
    s = aggregate([1.0, 2.0, 3.0])
    assert (s['mean'], s['std'], s['min'], s['max'], s['missing']) == (2.0, 1.0, 1.0, 3.0, 0)
    s = aggregate([1.5, None])
    assert (s['mean'], s['std'], s['n'], s['missing']) == (1.5, 0.0, 2, 1)
    assert aggregate([None, None])['mean'] is None
    assert fmt_stat([1.0, 2.0, 3.0], '{:.2f}x', 'not reached') == '2.00x ± 1.00 [1.00..3.00]'
    assert fmt_stat([1.5, None], '{:.2f}x', 'not reached') == '1.50x (not reached in 1/2 seeds)'
    assert fmt_stat([None], '{:.2f}x', 'not reached') == 'not reached'


# ------------------------------------------------------------------ runs at a time: one per GPU, or a share of cores

def slots(jobs, n_gpus, n_cpus, parent_visible=None):
    """How many runs job_slots() starts at once, and the environment each slot adds."""
    at_once = job_slots(jobs, n_gpus, n_cpus)
    gpus = visible_gpus(n_gpus, parent_visible) if n_gpus else None
    return at_once, [slot_env(slot, at_once, n_cpus, gpus) for slot in range(at_once)]


def test_eight_gpus_run_eight_at_once_each_on_its_own_gpu():
    at_once, envs = slots(0, n_gpus=8, n_cpus=64)
    assert at_once == 8
    assert [env['CUDA_VISIBLE_DEVICES'] for env in envs] == [str(i) for i in range(8)]
    assert all(env['OMP_NUM_THREADS'] == '8' for env in envs)  # the processes still share the cores
    assert slots(3, n_gpus=8, n_cpus=64)[0] == 3  # fewer than the GPUs: as asked


def test_more_jobs_than_gpus_is_capped_at_one_run_per_gpu():
    at_once, envs = slots(4, n_gpus=2, n_cpus=2)
    assert at_once == 2 and [env['CUDA_VISIBLE_DEVICES'] for env in envs] == ['0', '1']
    assert slots(1, n_gpus=2, n_cpus=2)[1] == [{'CUDA_VISIBLE_DEVICES': '0'}]  # one at a time: no thread share


def test_the_parents_cuda_visible_devices_are_the_ones_the_runs_get():
    at_once, envs = slots(0, n_gpus=2, n_cpus=16, parent_visible='3,5')
    assert at_once == 2 and [env['CUDA_VISIBLE_DEVICES'] for env in envs] == ['3', '5']
    assert visible_gpus(2, 'GPU-aa, GPU-bb') == ['GPU-aa', 'GPU-bb']


def test_runs_on_cuda_fill_every_visible_gpu_unless_pinned_to_one(monkeypatch):
    monkeypatch.setattr(speedup, 'resolve_device', lambda name: 'cuda' if name == 'auto' else name)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 4)
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '2,3,6,7')
    assert speedup.run_gpus(['auto', 'cuda']) == (4, ['2', '3', '6', '7'])
    assert speedup.run_gpus(['cuda:1']) == (1, None)  # it must still see cuda:1: one at a time, all GPUs visible
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES')
    assert speedup.run_gpus(['cuda']) == (4, ['0', '1', '2', '3'])


def test_run_all_starts_each_run_on_a_gpu_no_running_process_holds(monkeypatch, tmp_path):
    started, alive, together = [], [], []

    class Process:
        """A train.py that ends after a few polls (runs of unequal length: the slots free up out of order)."""
        def __init__(self, cmd, stdout=None, stderr=None, env=None):
            assert env['CUDA_VISIBLE_DEVICES'] not in [p.gpu for p in alive]
            self.gpu, self.polls, self.returncode = env['CUDA_VISIBLE_DEVICES'], 2 + 3 * (len(started) % 2), None
            started.append(self.gpu)
            alive.append(self)
            together.append(len(alive))

        def poll(self):
            self.polls -= 1
            if self.polls == 0:
                self.returncode = 0
                alive.remove(self)
            return self.returncode

    monkeypatch.setattr(speedup.subprocess, 'Popen', Process)
    monkeypatch.setattr(speedup, 'run_gpus', lambda devices: (2, ['3', '5']))
    monkeypatch.setattr(speedup, 'read_log', lambda out_dir: [])
    runs = {i: TrainConfig(out_dir=str(tmp_path / str(i))) for i in range(5)}
    assert all(how == 'trained' for _, how in speedup.run_all(runs, jobs=0).values())
    assert len(started) == 5 and set(started) == {'3', '5'} and max(together) == 2


def test_without_gpus_jobs_share_the_cores_as_before():
    assert slots(0, n_gpus=0, n_cpus=2) == (2, [{'OMP_NUM_THREADS': '1'}] * 2)  # one per core, one thread each
    assert slots(2, n_gpus=0, n_cpus=8) == (2, [{'OMP_NUM_THREADS': '4'}] * 2)
    assert slots(1, n_gpus=0, n_cpus=8) == (1, [{}])  # alone: the environment as it is
    assert slots(0, n_gpus=0, n_cpus=None) == (1, [{}])  # os.cpu_count() may not know
    assert speedup.run_gpus(['cpu']) == (0, None)


# ------------------------------------------------------------------ configuration errors, before any compute

def tiny_speedup(tmp_path, data, **overrides):
    cfg = dict(TINY, dataset=data, init_from='auto', max_iters=16, lr_decay_iters=16, eval_interval=4,
               log_interval=100, teacher=str(tmp_path / 'teacher' / 'ckpt.pt'),
               teacher_train=dict(n_layer=1, n_embd=32, max_iters=30, lr_decay_iters=30, eval_interval=30),
               variants={'let': dict(let_proj='linear', let_lambda=1.0, let_stop=8),
                         'let-interp': dict(let_proj='interp', let_lambda=1.0, let_stop=8)},
               seeds=(1, 2), speedup_dir=str(tmp_path / 'speedup'))
    cfg.update(overrides)
    return cfg


def test_a_bad_variant_is_an_error_before_anything_is_trained(shakespeare_byte, tmp_path):
    with pytest.raises(ConfigError, match=r"variant 'let'.*unknown setting 'let_lamda'.*'let_lambda'"):
        speedup.main([], tiny_speedup(tmp_path, shakespeare_byte, variants={'let': {'let_lamda': 1.0}}))
    with pytest.raises(ConfigError, match=r"variant 'let' sets \['batch_size'\]"):
        speedup.main([], tiny_speedup(tmp_path, shakespeare_byte, variants={'let': {'batch_size': 8}}))
    with pytest.raises(ConfigError, match=r"variant 'let'.*let_layers=\(5,\)"):
        speedup.main([], tiny_speedup(tmp_path, shakespeare_byte, variants={'let': {'let_layers': (5,)}}))
    with pytest.raises(ConfigError, match=r"groups: 'k'.*not variants: \['k9'\]"):
        speedup.main([], tiny_speedup(tmp_path, shakespeare_byte, groups={'k': ('let', 'k9')}))
    with pytest.raises(ConfigError, match="unknown setting 'seed_list'"):
        speedup.main(['--seed_list=(1, 2)'])
    assert not (tmp_path / 'teacher').exists() and not (tmp_path / 'speedup').exists()


def test_a_missing_dataset_names_its_prepare_script(tmp_path):
    with pytest.raises(ConfigError, match='data/nosuch/prepare.py'):
        speedup.main([], tiny_speedup(tmp_path, 'nosuch/byte'))


# ------------------------------------------------------------------ end to end

@pytest.fixture
def one_thread(monkeypatch):
    """Tiny models train several times faster on one thread when the cores are shared (train.py's children)."""
    monkeypatch.setenv('OMP_NUM_THREADS', '1')


def test_the_whole_check_trains_teacher_and_runs_then_reports_and_reuses_them(shakespeare_byte, tmp_path, one_thread):
    cfg = tiny_speedup(tmp_path, shakespeare_byte, groups={'projector': {'linear P': 'let', 'interp': 'let-interp'}})
    results = speedup.main([], cfg)
    out = tmp_path / 'speedup'
    assert (tmp_path / 'teacher' / 'ckpt.pt').exists()  # trained first, where `teacher` points
    for seed in (1, 2):
        for run in ('baseline', 'let', 'let-interp'):
            assert (out / f'seed{seed}' / run / 'log.jsonl').exists()
    for png in ('val_loss_vs_steps.png', 'val_loss_vs_time.png'):
        assert (out / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    report = (out / 'report.md').read_text()
    assert '](val_loss_vs_steps.png)' in report and '](val_loss_vs_time.png)' in report
    rows = [line for line in report.splitlines() if line.startswith('| ')]
    for name in ('let', 'let-interp'):
        assert sum(row.startswith(f'| {name} ') for row in rows) == 5  # speedup, gap, lr tables; a row per seed
    assert 'python speedup.py' in report and 'torch ' + torch.__version__ in report
    assert 'trained here' in report
    # a group (an ablation): its own table, the baseline's row first, its rows by their labels, and its plot
    section = report.split('### projector')[1].split('##')[0]
    assert [row.split('|')[1].strip() for row in section.splitlines() if row.startswith('| ')] == \
        ['run', 'baseline', 'linear P', 'interp']
    assert '](ablation_projector.png)' in section
    assert (out / 'ablation_projector.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'Target: the final val loss of an UNTUNED baseline (learning rate 0.003 only)' in report
    assert set(results) == {'let', 'let-interp'} and all(len(r) == 2 for r in results.values())

    # the same command again: every run is finished with the same settings, so nothing trains and nothing changes
    mtimes = {p: p.stat().st_mtime for p in out.glob('seed*/*/ckpt.pt')}
    again = speedup.main([], cfg)
    assert {p: p.stat().st_mtime for p in out.glob('seed*/*/ckpt.pt')} == mtimes
    assert again == results
    assert 'reused from an earlier invocation' in (out / 'report.md').read_text()


def test_the_lr_grid_tunes_the_baseline_and_the_report_names_it_with_distillation_variants(shakespeare_byte,
                                                                                         tmp_path, one_thread):
    """Two learning rates for the baseline: the one with the lower mean final val loss sets the target and the
    variants run at it; a KD variant (SALT) runs beside LET, and a variant without a teacher is never charged
    the teacher's training time."""
    variants = {'let': dict(let_proj='linear', let_lambda=1.0, let_stop=8),
                'salt': dict(let_lambda=0.0, kd_lambda=1.0, kd_stop=8),
                'plain-again': dict(teacher='')}
    cfg = tiny_speedup(tmp_path, shakespeare_byte, lr_grid=(3e-4, 3e-3), variants=variants, jobs=2)
    results = speedup.main([], cfg)
    out = tmp_path / 'speedup'

    def final(seed, run):
        return read_log(str(out / f'seed{seed}' / run))[-1]['val_loss']
    means = {lr: (final(1, f'baseline-lr{lr:g}') + final(2, f'baseline-lr{lr:g}')) / 2 for lr in (3e-4, 3e-3)}
    best = min(means, key=means.get)
    assert best == 3e-3  # 16 steps at 3e-4 barely move: the grid must find the larger one
    for seed in (1, 2):
        assert results['let'][seed - 1]['target'] == final(seed, 'baseline-lr0.003')
        assert (out / f'seed{seed}' / 'salt-lr0.003' / 'log.jsonl').exists()
        assert not (out / f'seed{seed}' / 'salt-lr0.0003').exists()  # variants run at the baseline's best only
    report = (out / 'report.md').read_text()
    assert 'Target: the final val loss of the baseline at learning rate 0.003, the best of 0.0003, 0.003' in report
    assert '| baseline | 0.003 (chosen) |' in report.replace('  ', ' ').replace('  ', ' ')
    assert 'KD (SALT-style, weight falling linearly to 0 at step 8): w0 1' in report
    with_teacher = results['let'] + results['salt']
    assert all(r['teacher_step_ratio'] is not None for r in with_teacher)
    assert all((r['time_speedup_with_teacher'] is None) == (r['steps'] is None) for r in with_teacher)
    # the plain variant reaches the target (it is the baseline again), and is not charged the teacher's time
    assert all(r['steps'] is not None and r['time_speedup_with_teacher'] is None for r in results['plain-again'])
    assert all(r['teacher_step_ratio'] is None for r in results['plain-again'])


def test_a_run_folder_is_reused_resumed_or_started_over_by_its_settings(shakespeare_byte, tmp_path, one_thread):
    def config(**overrides):
        settings = dict(TINY, dataset=shakespeare_byte, out_dir=str(tmp_path / 'run'), init_from='auto')
        return speedup.checked_train_config(dict(settings, **overrides), 'test')

    def run(cfg, fresh=False):
        return speedup.run_all({'run': cfg}, fresh=fresh)['run']
    cfg = config()
    assert run(cfg)[1] == 'trained'
    assert run(cfg)[1] == 'reused'
    assert run(config(log_interval=3))[1] == 'reused'        # logging does not change the result
    assert run(config(checkpoint_interval=5))[1] == 'reused'  # nor how often it is saved
    assert run(config(learning_rate=1e-3))[1] == 'trained'   # anything else does
    assert run(config(learning_rate=1e-3), fresh=True)[1] == 'trained'

    # an interrupted run: stopped at step 4 of 8. It resumes and ends where an uninterrupted run ends
    whole, _ = run(config(out_dir=str(tmp_path / 'whole')))
    cut = config(out_dir=str(tmp_path / 'cut'), max_iters=4)
    run(cut)
    path = tmp_path / 'cut' / 'ckpt.pt'
    ckpt = torch.load(path, weights_only=False)
    ckpt['config']['max_iters'] = TINY['max_iters']  # what the checkpoint of an 8-step run holds at step 4
    torch.save(ckpt, path)
    resumed, how = run(config(out_dir=str(tmp_path / 'cut')))
    assert how == 'resumed'
    assert [(r['iter'], r['val_loss']) for r in resumed] == [(r['iter'], r['val_loss']) for r in whole]


def test_the_speedup_demo_compares_exactly_what_the_training_configs_train():
    """config/speedup_shakespeare.py reads its teacher and LET runs from config/teacher_shakespeare.py and
    config/let_shakespeare.py (as the settings they change in the baseline config): the speedup's runs are the
    runs `python train.py config/<name>` makes, wherever they are placed."""
    demo = load_config(speedup.SpeedupConfig, [os.path.join(REPO, 'config', 'speedup_shakespeare.py')])
    ignored = set(speedup.NOT_RESULTS)
    for name, demo_run in [('let_shakespeare.py', speedup.run_config(demo, demo.seeds[0], 'let', demo.variants['let'])),
                           ('teacher_shakespeare.py', speedup.teacher_config(demo)),
                           ('train_shakespeare_byte.py', speedup.run_config(demo, demo.seeds[0], 'baseline',
                                                                            {'teacher': ''}))]:
        alone = dataclasses.asdict(load_config(TrainConfig, [os.path.join(REPO, 'config', name)]))
        differ = {k: (v, alone[k]) for k, v in dataclasses.asdict(demo_run).items()
                  if k not in ignored and plain(v) != plain(alone[k])}
        assert differ == {}, f"config/{name} differs from config/speedup_shakespeare.py: {differ}"


def test_a_teacher_and_dataset_on_the_command_line_reach_every_run_of_the_demo(shakespeare_byte, teacher_ckpt):
    """The demo's variants come from let_, salt_ and rkd_shakespeare.py, which name their own teacher: a teacher and
    a dataset given on the command line must be every variant's, not the one of the file it was derived from."""
    demo = os.path.join(REPO, 'config', 'speedup_shakespeare.py')
    assert load_config(speedup.SpeedupConfig, [demo]).teacher != teacher_ckpt
    cfg = load_config(speedup.SpeedupConfig, [demo, f'--dataset={shakespeare_byte}', f'--teacher={teacher_ckpt}'])
    speedup.check_settings(cfg)
    baselines, variants = speedup.plan_runs(cfg)  # what main() trains, checked as main() checks it
    assert {name for _, name, _ in variants} == {'let', 'salt', 'rkd'}
    assert {(run.teacher, run.dataset) for run in variants.values()} == {(teacher_ckpt, shakespeare_byte)}
    assert {(run.teacher, run.dataset) for run in baselines.values()} == {('', shakespeare_byte)}
    assert speedup.teacher_plan(cfg) == (None, 'given')  # trained with other settings: used as is, not retrained


def test_runs_save_every_checkpoint_interval_th_evaluation_and_the_last_step():
    """speedup.py's runs keep a checkpoint for resume and reuse, not one per evaluation: config/speedup_smollm2.py
    has 28 evaluations of a student whose checkpoint is ~3 GB."""
    cfg = load_config(speedup.SpeedupConfig, [os.path.join(REPO, 'config', 'speedup_smollm2.py')])
    run_cfg = speedup.run_config(cfg, 1337, 'let', {})
    assert run_cfg.always_save_checkpoint and run_cfg.checkpoint_interval == cfg.checkpoint_interval > 1
    evaluations = run_cfg.max_iters // run_cfg.eval_interval
    assert evaluations // run_cfg.checkpoint_interval + 1 <= 5  # saves per run, the last step's included
