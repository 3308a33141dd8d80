"""
What only a job of several processes (torchrun) runs, imported by train.py and runtime.py only then: the checks
that torchrun restarts and out_dir work for every rank; DDP's wrapper (wrap) and FSDP2's sharding (shard), both
applied by runtime.parallelize; the gradient-sync toggle of gradient accumulation; and FSDP's checkpoints as
shards: every rank writes and reads its own slices of the weights and the optimizer (torch.distributed.checkpoint)
in the folder out_dir/ckpt/, beside meta.pt, the rest of checkpoint.py's dict. The folder can be resumed with
another number of processes. One plain file of it, in checkpoint.py's format, for sample.py, eval or a teacher:

$ python -m components.distributed consolidate OUT_DIR       # writes OUT_DIR/model.pt
"""

import inspect
import os
import shutil
import socket
import sys
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel as DDP

from components.checkpoint import META, find_checkpoint, load_checkpoint, save_checkpoint
from configurator import ConfigError, exit_on_error


def check_restarts():
    """torchrun --max-restarts must give each restart a fresh store, or restarts fail at random.

    torchrun's agent hosts one TCPStore for the whole job and hands it to the workers
    (TORCHELASTIC_USE_AGENT_STORE=True, the same MASTER_PORT in every attempt): the c10d rendezvous
    creates it once, in torch/distributed/elastic/rendezvous/dynamic_rendezvous.py next_rendezvous
    (`if self._bootstrap_store_info is None`). init_process_group writes each rank's address under
    the same keys in every attempt ('default_pg/0//cpu//0/<rank>' for gloo), and
    torch/distributed/rendezvous.py _create_c10d_store assumes "a new TCPStore for every retry". So
    restarted workers find the dead attempt's addresses already there and may read them before their
    peers overwrite them: gloo fails with "Connection refused", or init hangs. With
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, torchrun gives each attempt a new store on a new port."""
    restarts = int(os.environ.get('TORCHELASTIC_MAX_RESTARTS', '0'))
    if restarts > 0 and os.environ.get('TORCHELASTIC_USE_AGENT_STORE') == 'True':
        raise ConfigError(f"torchrun --max-restarts={restarts} with its shared store: a restarted "
                          f"worker can read its dead peers' addresses and fail or hang (a torch "
                          f"bug, see components/distributed.py). Start torchrun as "
                          f"TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun ...")


def check_shared(out_dir, rank, world_size):
    """Under torchrun, every rank must see out_dir as one folder: rank 0 alone writes a plain checkpoint, every
    rank writes its shards into the one a sharded checkpoint is renamed from, and every rank decides whether to
    resume from what it finds there. On disks local to each node no whole checkpoint would exist anywhere.
    Rank 0 writes a file with a fresh token; every rank must read it back. Call it on every rank."""
    token = [os.urandom(8).hex() if rank == 0 else None]
    dist.broadcast_object_list(token)
    probe = os.path.join(out_dir, f'.shared-test-{token[0]}')
    if rank == 0:
        with open(probe, 'w') as f:
            f.write(token[0])
    dist.barrier()
    try:
        with open(probe) as f:
            sees = f.read() == token[0]
    except OSError:
        sees = False
    blind = [None] * world_size
    dist.all_gather_object(blind, None if sees else f"rank {rank} on {socket.gethostname()}")
    dist.barrier()  # every rank has looked before the probe goes
    if rank == 0:
        os.remove(probe)
    blind = [who for who in blind if who]
    if blind:
        raise ConfigError(f"out_dir {out_dir!r} is not one folder for all ranks: {', '.join(blind)} cannot see "
                          f"the file rank 0 wrote there. Checkpoints need out_dir on a filesystem every node "
                          f"shares (NFS, Lustre, ...): pass such an out_dir")


def wrap(model, device):
    """DDP: every rank holds the whole module; gradients are averaged across ranks during backward.
    No buffer syncing at each forward: the only buffers are rotary tables, identical on every rank.
    (torch 2.13 renamed broadcast_buffers, and warns on every rank when the old name is used.)"""
    no_sync = {'broadcast_buffers': False}
    if 'forward_sync_buffers' in inspect.signature(DDP).parameters:
        no_sync = {'forward_sync_buffers': False}
    # gradient_as_bucket_view: the gradients live in DDP's communication buckets, not in a second copy
    return DDP(model, device_ids=[device.index] if device.type == 'cuda' else None, gradient_as_bucket_view=True,
               **no_sync)


def set_gradient_sync(modules, on):
    """Whether the next backward averages gradients across ranks: with gradient accumulation, only the
    step's last micro-step does. modules: any of the student's wrappers (DDP, FSDP's) and LET's sharded
    projectors; others are skipped."""
    for m in modules:
        if isinstance(m, FSDPModule):
            m.set_requires_gradient_sync(on)
        elif isinstance(m, DDP):
            m.require_backward_grad_sync = on


def shard(model, device, world_size, dtype, projectors=None):
    """FSDP2: each block, then the root (embeddings, final norm, head), keeps 1/world_size of its
    parameters, gradients and AdamW state on each rank. A block's whole weights exist only while it
    computes: all-gathered before its forward and its backward, freed after; gradients are
    reduce-scattered. Sharded in place: the student's parameters become DTensors, so the optimizer
    must be built afterwards. The student may still be on the meta device (train.py): then its
    shards are allocated and drawn afterwards (GPT.init_weights).
    LET's projectors (each with parameters) are sharded on the same mesh: every parameter of the
    optimizer is then a DTensor, as fused AdamW needs (it cannot mix plain tensors and DTensors),
    and FSDP averages their gradients like the student's."""
    if dtype == 'float16':
        raise ConfigError("data_parallel='fsdp' trains in bfloat16 or float32 (float16 would need "
                          "a sharded loss scaler): pass --dtype=bfloat16, or data_parallel='ddp'")
    mesh = init_device_mesh(device.type, (world_size,))
    mp = MixedPrecisionPolicy()  # float32: compute and reduce in the parameters' own dtype
    if dtype == 'bfloat16':
        # bf16 copies of the weights for compute; fp32 gradient reduction; fp32 shards for AdamW
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)  # the root: what no block holds; tied weights too
    for P in projectors or ():
        if list(P.parameters()):  # 'interp' has none
            fully_shard(P, mesh=mesh, mp_policy=mp)  # each P: its forward gathers its weights
    return model


def _trained(modules):
    """{name: module} (the student, LET's projectors or None) as one module: one state dict that names every
    parameter of the optimizer, as torch.distributed.checkpoint needs."""
    return torch.nn.ModuleDict({name: m for name, m in modules.items() if m is not None})


def save_sharded(path, state, modules, optimizer):
    """Called by every rank: each writes its shards of the weights and optimizer into path.tmp, rank 0 adds
    meta.pt (state: the rest of the checkpoint), then renames path.tmp to path. A crash at any moment leaves a
    whole checkpoint at path, or at path.old (checkpoint.find_checkpoint) between the two renames."""
    model_state, optim_state = get_state_dict(_trained(modules), optimizer)
    tmp, old, master = path + '.tmp', path + '.old', dist.get_rank() == 0
    if master:
        shutil.rmtree(tmp, ignore_errors=True)  # shards of a save that a crash interrupted
    dist.barrier()
    dcp.save({'model': model_state, 'optimizer': optim_state}, checkpoint_id=tmp)  # returns when all wrote
    if master:
        save_checkpoint(os.path.join(tmp, META), state)
        if os.path.exists(path):
            shutil.rmtree(old, ignore_errors=True)  # an older one, if a crash came before its removal
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()  # no rank starts the next save into path.tmp before this one is in place


def load_sharded(path, modules, optimizer):
    """The weights and optimizer of a sharded checkpoint into the sharded modules and their optimizer, each
    rank reading the slices it holds (whatever the number of processes that wrote them)."""
    trained = _trained(modules)
    model_state, optim_state = get_state_dict(trained, optimizer)
    state = {'model': model_state, 'optimizer': optim_state}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(trained, optimizer, model_state_dict=state['model'], optim_state_dict=state['optimizer'])


def consolidate(path):
    """A sharded checkpoint (folder) as one plain dict in checkpoint.py's FORMAT, read by this one process: the
    student's and projectors' whole weights, no optimizer. Needs the student's size in memory (4 bytes per
    parameter)."""
    ckpt = load_checkpoint(path)
    shapes = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
    weights = {key.removeprefix('model.'): torch.empty(m.size, dtype=m.properties.dtype)
               for key, m in shapes.items() if key.startswith('model.')}
    with warnings.catch_warnings():  # torch warns that it loads in one process: what is asked here
        warnings.filterwarnings('ignore', 'torch.distributed is disabled')
        dcp.load({'model': weights}, checkpoint_id=path, no_dist=True)  # one process reads every shard

    def part(name):
        return {k.removeprefix(name + '.'): v for k, v in weights.items() if k.startswith(name + '.')}
    ckpt.update(model=part('student'), projectors=part('projectors') or None, optimizer=None)
    return ckpt


def main(args):
    """python -m components.distributed consolidate OUT_DIR: the sharded checkpoint as the plain file
    OUT_DIR/model.pt."""
    if len(args) != 2 or args[0] != 'consolidate':
        raise ConfigError("usage: python -m components.distributed consolidate OUT_DIR")
    found = find_checkpoint(os.path.join(args[1], 'ckpt'))
    if not found or not os.path.isdir(found):
        raise ConfigError(f"{args[1]} holds no sharded checkpoint (ckpt/ of a data_parallel='fsdp' run)")
    out = os.path.join(args[1], 'model.pt')
    ckpt = consolidate(found)
    save_checkpoint(out, ckpt)
    print(f"wrote {out}: the student at iteration {ckpt['iter_num']}, without the optimizer; "
          f"python sample.py --init_from={out}")


if __name__ == '__main__':
    exit_on_error(main, sys.argv[1:])
