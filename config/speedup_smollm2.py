# The LET check on one GPU with the paper's kind of teacher: SmolLM2-135M guides a larger LLaMA-style student
# on Shakespeare in SmolLM2's vocabulary. Every training setting (student, data, schedule, LET) is in
# config/let_smollm2_gpu.py; this file adds what speedup.py compares: a tuned baseline, LET, SALT and RKD.
# $ python speedup.py config/speedup_smollm2.py
# UNMEASURED: no GPU has run this config; the sizes come from FLOP arithmetic (about 20 s of
# compute per run on an H100, so six runs with compile and evaluation in roughly 8-10 minutes) and the LET and
# distillation weights are guesses. The CPU demo needed far larger weights than the paper's (lambda0 = 100, SALT
# w0 = 20, RKD w0 = 10), but its 0.12M-parameter teacher and 0.63M student say little about a 256M student and
# SmolLM2-135M; sweep them with --variants before trusting a number.
import os
exec(open(os.path.join(os.path.dirname(__file__), 'let_smollm2_gpu.py')).read())
speedup_dir = 'out-speedup-smollm2'
lr_grid = (3e-4, 6e-4, 1.2e-3)     # around let_smollm2_gpu.py's 6e-4; the variants run at the best
checkpoint_interval = 7            # of 28 evaluations: 4 saves of ~3 GB per run, plus the last step
seeds = (1337,)                    # more seeds: --seeds="(1337, 1338, 1339)" (three times the runs)
variants = {
    'let': {},                                                # the LET settings of let_smollm2_gpu.py
    # SALT as published (a step switch, docs/training.md), its n_KD = LET's S_stop (~29% of the run; SALT's own
    # main runs distilled for ~17%, and 20K-60K of ~208K steps mattered little)
    'salt': dict(let_lambda=0.0, kd_lambda=1.0, kd_stop=200, kd_schedule='step'),
    'rkd': dict(let_lambda=0.0, kd_lambda=1.0, kd_stop=0),     # distillation throughout
    # the paper's own LET setting, one more run per seed:
    # 'let-paper': dict(let_proj='interp', let_lambda=0.1),
}
