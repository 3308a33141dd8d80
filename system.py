"""
Where a run executes: the device, the dtype, whether to compile, the machine in words, and the device's peak FLOP/s
for MFU. One place for these defaults; train.py, bench.py, speedup.py and eval.py all use it.
"""

import os
import platform
from contextlib import nullcontext

import torch

from configurator import ConfigError

DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def resolve_device(name):
    """'auto' picks cuda when available, then mps, then cpu. A device this torch cannot use is a ConfigError that
    says why, before anything is allocated."""
    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else ('mps' if torch.backends.mps.is_available() else 'cpu')
    kind = name.split(':')[0]
    if kind == 'cuda' and not torch.cuda.is_available():
        why = ('this torch was built without CUDA' if torch.version.cuda is None
               else 'no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver)')
        raise ConfigError(f"device={name!r}, but {why} (torch {torch.__version__}); use --device=cpu or "
                          f"--device=auto, or install a CUDA build of torch")
    if kind == 'cuda' and ':' in name and int(name.split(':')[1]) >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r}, but only {torch.cuda.device_count()} CUDA device(s) are visible")
    if kind == 'mps' and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name!r}, but MPS (Apple GPUs) is not available here; use --device=cpu")
    if kind not in ('cpu', 'cuda', 'mps'):
        raise ConfigError(f"device={name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return name


def resolve_dtype(name, device_type):
    """'auto' is bf16 on CUDA (fp16 where bf16 is missing, with a GradScaler) and fp32 elsewhere."""
    if name != 'auto':
        return name
    if device_type != 'cuda':
        return 'float32'
    return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'


def autocast(device_type, dtype):
    """Mixed precision for the forward passes: a no-op in float32."""
    if dtype == 'float32':
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=DTYPES[dtype])


def resolve_compile(setting, device_type):
    """None compiles on CUDA only: on a CPU, compiling short runs costs more than it saves."""
    return device_type == 'cuda' if setting is None else setting


def describe_machine(device):
    """What timings are measured on, in words: the CPU, the accelerator, torch."""
    cpu = platform.processor() or platform.machine()
    if os.path.isfile('/proc/cpuinfo'):  # Linux: platform.processor() is often empty there
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    device = str(device)
    if device.startswith('cuda'):
        device += f" ({torch.cuda.get_device_name(torch.device(device))})"
    return (f"{cpu}, {os.cpu_count()} CPUs (torch threads {torch.get_num_threads()}), torch {torch.__version__}, "
            f"device {device}")


# peak dense bf16/fp16 FLOP/s from the vendors' datasheets (no sparsity), by a substring of the device's name
PEAK_FLOPS = [
    ('H200', 989e12), ('H100 NVL', 835e12), ('H100 PCIe', 756e12), ('H100', 989e12), ('GH200', 989e12),
    ('A100', 312e12), ('A800', 312e12), ('L40S', 362e12), ('L4', 121e12), ('A10G', 125e12), ('A10', 125e12),
    ('RTX 4090', 165e12), ('RTX 3090', 71e12), ('V100', 125e12), ('T4', 65e12),
]


def device_peak_flops(device, dtype):
    """Peak FLOP/s for MFU, or None where unknown (CPUs, fp32, unlisted cards): then MFU is not reported."""
    if device.type != 'cuda' or dtype == 'float32':
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS if key in name), None)
