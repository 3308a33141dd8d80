# The LET check on one GPU with the paper's kind of teacher: SmolLM2-135M guides a larger LLaMA-style student
# on Shakespeare in SmolLM2's vocabulary. Every training setting (student, data, schedule, LET) is in
# config/let_smollm2_gpu.py; this file adds what speedup.py compares.
# $ python speedup.py config/speedup_smollm2.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'let_smollm2_gpu.py')).read())
speedup_dir = 'out-speedup-smollm2'
seeds = (1337, 1338, 1339)
variants = {
    'let': {},     # the LET settings of let_smollm2_gpu.py
    # the paper's own setting, one more run per seed:
    # 'let-paper': dict(let_proj='interp', let_lambda=0.1),
}
