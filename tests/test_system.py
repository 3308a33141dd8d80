"""components/runtime.py: the CUDA-only decisions as pure functions of their inputs, checked on any machine."""

import pytest
import torch

from components.runtime import PEAK_FLOPS, peak_flops_for, pick_dtype, resolve_dtype


def test_auto_dtype_is_float32_off_cuda_whatever_the_rest():
    for device_type in ('cpu', 'mps'):
        assert pick_dtype('auto', device_type, native_bf16=False) == 'float32'
        assert pick_dtype('auto', device_type, native_bf16=True, fsdp=True) == 'float32'
    assert resolve_dtype('auto', 'cpu') == 'float32'  # and the live check is not asked off CUDA


def test_auto_dtype_is_bfloat16_on_a_gpu_that_has_it_natively_with_ddp_or_fsdp():
    assert pick_dtype('auto', 'cuda', native_bf16=True) == 'bfloat16'
    assert pick_dtype('auto', 'cuda', native_bf16=True, fsdp=True) == 'bfloat16'


def test_v100_and_t4_get_float16_not_their_emulated_bfloat16():
    """torch.cuda.is_bf16_supported() says True on them by default (emulation), several times slower than fp16."""
    assert pick_dtype('auto', 'cuda', native_bf16=False) == 'float16'
    assert pick_dtype('auto', 'cuda', native_bf16=False, fsdp=False) == 'float16'


def test_fsdp_without_native_bfloat16_trains_in_float32_which_it_accepts():
    # distributed.shard() refuses float16: there is no sharded loss scaler
    assert pick_dtype('auto', 'cuda', native_bf16=False, fsdp=True) == 'float32'


def test_resolve_dtype_asks_cuda_for_native_bfloat16_only(monkeypatch):
    """A V100 as torch sees it: bf16 'supported' by emulation, not natively."""
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: including_emulation)
    assert resolve_dtype('auto', 'cuda') == 'float16'
    assert resolve_dtype('auto', 'cuda', fsdp=True) == 'float32'
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: True)  # an A100
    assert resolve_dtype('auto', 'cuda', fsdp=True) == 'bfloat16'


@pytest.mark.parametrize('name', ['float32', 'bfloat16', 'float16'])
def test_an_explicit_dtype_is_kept_as_it_is(name):
    for device_type in ('cpu', 'cuda'):
        for native in (False, True):
            for fsdp in (False, True):
                assert pick_dtype(name, device_type, native, fsdp) == name
    assert resolve_dtype(name, 'cpu') == name


@pytest.mark.parametrize('device_name, peak', [
    ('NVIDIA L40', 181e12), ('NVIDIA L4', 121e12), ('NVIDIA L40S', 362e12),
    ('NVIDIA H100 80GB HBM3', 989e12), ('NVIDIA H100 NVL', 835e12), ('NVIDIA H100 PCIe', 756e12),
    ('NVIDIA H200', 989e12), ('NVIDIA H200 NVL', 835e12), ('NVIDIA GH200 480GB', 989e12),
    ('NVIDIA A100-SXM4-80GB', 312e12), ('NVIDIA A100 80GB PCIe', 312e12), ('NVIDIA A800-SXM4-80GB', 312e12),
    ('NVIDIA A10G', 125e12), ('NVIDIA A10', 125e12),
    ('Tesla V100-SXM2-16GB', 125e12), ('Tesla T4', 65e12),
    ('NVIDIA GeForce RTX 4090', 165e12), ('NVIDIA GeForce RTX 3090', 71e12),
])
def test_the_peak_is_found_by_a_whole_token_of_the_real_device_name(device_name, peak):
    assert peak_flops_for(device_name, 'bfloat16') == peak
    assert peak_flops_for(device_name, 'float16') == peak


def test_a_key_inside_a_longer_token_does_not_match():
    """Substring matching read 'NVIDIA L40' as an L4 and 'NVIDIA GH200' as an H200, and read A100s as A10s in
    any order of the table that put 'A10' first."""
    assert peak_flops_for('NVIDIA L40', 'bfloat16') == PEAK_FLOPS['L40'] != PEAK_FLOPS['L4']
    assert peak_flops_for('NVIDIA A100-SXM4-40GB', 'bfloat16') == PEAK_FLOPS['A100'] != PEAK_FLOPS['A10']
    assert peak_flops_for('NVIDIA RTX A4000', 'bfloat16') is None   # neither an A40 nor a T4 inside
    assert peak_flops_for('NVIDIA GeForce RTX 40900', 'bfloat16') is None


def test_unknown_cards_and_float32_have_no_peak_so_no_mfu():
    assert peak_flops_for('NVIDIA GeForce GTX 1080 Ti', 'bfloat16') is None
    assert peak_flops_for('', 'float16') is None
    assert peak_flops_for('NVIDIA H100 80GB HBM3', 'float32') is None
