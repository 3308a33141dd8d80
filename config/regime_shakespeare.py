# LET in the paper's regime, small: the CPU demo's student, teacher and data (config/speedup_shakespeare.py) at a
# budget where the plain student ends with a val loss well below its teacher's, as the paper's 1.4B student does
# against its 135M teacher. The demo's teacher reaches val 2.148; the tuned baseline here passes it at step 694 and
# ends at 1.792. Against that baseline, three seeds: lambda0 in decades, S_stop at 25%, 50% and 100% of the run, the
# teacher's final state against its middle one (L2M, M2M), and SALT and RKD at their demo weights.
# $ python speedup.py config/regime_shakespeare.py   (37 runs: 137 minutes on 2 shared cores, about 55 on idle
#                                                     ones by CPU time; records/2026-12_let_regime)
# The report, out-regime-shakespeare/report.md, has one table and one plot per group.
# S_stop and SALT's kd_stop below are step counts of this 2,000-step run: --max_iters on the command line does not
# move them (nor lr_decay_iters).
import os
exec(open(os.path.join(os.path.dirname(__file__), 'speedup_shakespeare.py')).read())
speedup_dir = 'out-regime-shakespeare'

# the teacher is the demo's, unchanged (out-shakespeare-teacher/, reused when present): it keeps the demo's
# warmup, which the students' schedule below changes
teacher_train = dict(teacher_train, warmup_iters=warmup_iters)

# the students' schedule: the demo's 250 steps stretched to 2,000 (2.0M tokens, 0.45 of an epoch)
max_iters = 2000
lr_decay_iters = 2000              # cosine to min_lr exactly at the end
warmup_iters = 100                 # 5% of the run (the demo's 20 is 8% of its 250)
eval_interval = 50                 # 41 evaluations: the resolution of "steps to target" and of the teacher crossing

# the baseline's learning rate, re-tuned at this budget on the same factor-2 grid (the winner is inside it)
lr_grid = (1.5e-3, 3e-3, 6e-3)

_let = dict(variants['let'], let_stop=1000)  # the demo's LET (lambda0 100, k = 1, linear P, the teacher's final
                                             # state) with S_stop at 50% of this run
variants = {
    'let': _let,
    # lambda0, the alignment's weight at step 0: the paper's 0.1 up to the demo's 100, in decades
    'lambda0.1': dict(_let, let_lambda=0.1),
    'lambda1': dict(_let, let_lambda=1.0),
    'lambda10': dict(_let, let_lambda=10.0),
    # S_stop: 25% and 100% of the run (LET's is 50%)
    'stop500': dict(_let, let_stop=500),
    'stop2000': dict(_let, let_stop=2000),
    # the teacher's middle state (the output of its block 0 of 2) instead of its final one, to the same block
    'M2M': dict(_let, let_teacher_layer=0),
    # the paper's distillation baselines at the demo's weights: SALT's phase at 50% of this run, RKD all along
    'salt': dict(variants['salt'], kd_stop=1000),
    'rkd': variants['rkd'],
}

# the report's groups: {row label: variant}, each read against the same tuned baseline
groups = {
    'lambda0': {'0.1': 'lambda0.1', '1': 'lambda1', '10': 'lambda10', '100 (LET)': 'let'},
    'S_stop': {'500 (25%)': 'stop500', '1000 (50%, LET)': 'let', '2000 (100%)': 'stop2000'},
    'pairing': {'L2M (LET)': 'let', 'M2M': 'M2M'},
    'distillation': {'LET': 'let', 'SALT': 'salt', 'RKD': 'rkd'},
}
