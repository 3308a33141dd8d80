"""
Where a run executes: the device, the dtype, whether to compile, the machine in words, and the device's peak FLOP/s
for MFU. One place for these defaults; train.py, bench.py, speedup.py and eval.py all use it.
"""

import os
import platform
import re
import time
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


def pick_dtype(name, device_type, native_bf16, fsdp=False):
    """'auto': fp32 off CUDA; on CUDA bf16 where the GPU has it natively (Ampere and later), else fp16 with a
    GradScaler, or fp32 under FSDP (no sharded loss scaler here). Emulated bf16 (V100, T4) runs several times
    slower than fp16, so it does not count. An explicit name is returned as it is."""
    if name != 'auto':
        return name
    if device_type != 'cuda':
        return 'float32'
    if native_bf16:
        return 'bfloat16'
    return 'float32' if fsdp else 'float16'


def resolve_dtype(name, device_type, fsdp=False):
    """pick_dtype() for this machine's current CUDA device."""
    native = device_type == 'cuda' and torch.cuda.is_bf16_supported(including_emulation=False)
    return pick_dtype(name, device_type, native, fsdp)


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


# peak dense bf16/fp16 FLOP/s from the vendors' datasheets (no sparsity), by a token of the device's name
PEAK_FLOPS = {
    'H200': 989e12, 'H200 NVL': 835e12, 'GH200': 989e12, 'H100': 989e12, 'H100 NVL': 835e12, 'H100 PCIe': 756e12,
    'A100': 312e12, 'A800': 312e12, 'L40S': 362e12, 'L40': 181e12, 'L4': 121e12, 'A10G': 125e12, 'A10': 125e12,
    'RTX 4090': 165e12, 'RTX 3090': 71e12, 'V100': 125e12, 'T4': 65e12,
}


def peak_flops_for(name, dtype):
    """Peak FLOP/s of the device called `name` (torch.cuda.get_device_name), or None where unknown or in fp32.
    A key matches a whole token (letters and digits on neither side: 'L4' is not in 'NVIDIA L40', 'H200' not in
    'GH200', but 'A100' is in 'A100-SXM4-80GB'), and the longest match wins ('H100 NVL' over 'H100')."""
    if dtype == 'float32':
        return None
    keys = [key for key in PEAK_FLOPS if re.search(rf'(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])', name)]
    return PEAK_FLOPS[max(keys, key=len)] if keys else None


def device_peak_flops(device, dtype):
    """Peak FLOP/s for MFU, or None where unknown (CPUs, fp32, unlisted cards): then MFU is not reported."""
    if device.type != 'cuda' or dtype == 'float32':
        return None
    return peak_flops_for(torch.cuda.get_device_name(device), dtype)


class Stopwatch:
    """Seconds spent in training steps. A step queues its work on the GPU and never waits for it, so the clock
    is read only where the host waits anyway (a log line, an evaluation, a save, S_stop): stop() synchronises
    first, and the device's queued work is counted where it ran, not in the next evaluation."""

    def __init__(self, device, total=0.0):
        self.device, self.total, self.lap_time, self.t0 = device, total, 0.0, None

    def start(self):
        if self.t0 is None:
            self.t0 = time.time()

    def synchronizes(self):
        """Whether stop() waits for the device: CUDA queues a step's work, a CPU has done it when its call
        returns."""
        return self.device.type == 'cuda'

    def stop(self):
        if self.t0 is None:
            return
        if self.synchronizes():
            torch.cuda.synchronize(self.device)
        dt = time.time() - self.t0
        self.t0 = None
        self.total += dt
        self.lap_time += dt

    def lap(self):
        """Seconds in steps since the last lap (the clock stops: it starts again with the next step)."""
        self.stop()
        dt, self.lap_time = self.lap_time, 0.0
        return dt
