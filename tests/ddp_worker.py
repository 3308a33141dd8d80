"""Run by tests under torchrun: trains with the JSON overrides in argv[1] and saves this rank's final student
parameters to argv[2]/rank<r>.pt, so a test can compare the ranks with each other and with one process."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch  # noqa: E402

import train  # noqa: E402

run = train.main([], json.loads(sys.argv[1]))
state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
if run.projectors is not None:
    state.update({'projectors.' + k: v.detach().clone() for k, v in run.projectors.state_dict().items()})
torch.save(state, os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
