# The paper's ablations of LET, small: each variant changes one of LET's settings in the CPU demo
# (config/let_shakespeare.py: lambda0 = 100, S_stop = 125 of 250 steps, k = 1, a linear P, the cosine loss, the
# teacher's final state) and keeps everything else: the demo's student, teacher, data, tuned baseline and seeds.
# $ python speedup.py config/ablations_shakespeare.py        (14 minutes on 2 cores: records/2026-12_let_ablations)
# The report, out-ablations-shakespeare/report.md, has one table and one plot per ablation (`groups`).
import os
exec(open(os.path.join(os.path.dirname(__file__), 'speedup_shakespeare.py')).read())
speedup_dir = 'out-ablations-shakespeare'

_let = variants['let']  # the reference: the demo's LET, in every group below
variants = {
    'let': _let,
    # lambda0, the alignment's weight at step 0: the paper's 0.1 up to ours (100) in decades, and one beyond
    'lambda0.1': dict(_let, let_lambda=0.1),
    'lambda1': dict(_let, let_lambda=1.0),
    'lambda10': dict(_let, let_lambda=10.0),
    'lambda1000': dict(_let, let_lambda=1000.0),
    # S_stop, where the weight reaches 0: 25% and 100% of the run (LET's is 50%)
    'stop62': dict(_let, let_stop=62),
    'stop250': dict(_let, let_stop=250),
    # k, the student's block aligned (from 0, of 3; LET's is 1): also the pairings' student early and late
    'k0': dict(_let, let_layers=(0,)),
    'k2': dict(_let, let_layers=(2,)),
    # P, the projection between the widths (LET's is linear): the paper's parameter-free interpolation, an MLP
    'interp': dict(_let, let_proj='interp'),
    'mlp': dict(_let, let_proj='mlp'),
    # the loss (LET's is 1 - cos)
    'mse': dict(_let, let_loss='mse'),
    # the teacher's middle instead of its final state: the output of its block 0 of 2, to the student's
    # early, middle and late block (k = 0, 1, 2)
    'M2E': dict(_let, let_teacher_layer=0, let_layers=(0,)),
    'M2M': dict(_let, let_teacher_layer=0),
    'M2L': dict(_let, let_teacher_layer=0, let_layers=(2,)),
}

# the report's ablations: {row label: variant}, each read against the same tuned baseline
groups = {
    'lambda0': {'0.1': 'lambda0.1', '1': 'lambda1', '10': 'lambda10', '100 (LET)': 'let', '1000': 'lambda1000'},
    'S_stop': {'62 (25%)': 'stop62', '125 (50%, LET)': 'let', '250 (100%)': 'stop250'},
    'k': {'k=0': 'k0', 'k=1 (LET)': 'let', 'k=2 (the last block)': 'k2'},
    'projector': {'interp (the paper)': 'interp', 'linear (LET)': 'let', 'mlp': 'mlp'},
    'loss': {'cosine (LET)': 'let', 'mse': 'mse'},
    # the paper's six (its Figs. 3-4): teacher Late (final) or Middle -> student Early, Middle or Late
    'pairing': {'L2E': 'k0', 'L2M (LET)': 'let', 'L2L': 'k2', 'M2E': 'M2E', 'M2M': 'M2M', 'M2L': 'M2L'},
}
