"""The model, loading, patching and generation on a GPU (issue 33, item 6): skipped where there is none.

``bench/gpu_check.sh`` runs this module and the bench's forward and generate items on a lent GPU machine.
``COURSE_TEST_DEVICE=cpu`` runs the same checks on the CPU (to check the tests themselves on a machine without a
GPU); the reference is always the CPU model in float32.
"""

from __future__ import annotations

import os

import pytest
import torch

from helpers import HookedTransformer, patching

DEVICE = os.environ.get("COURSE_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no GPU on this machine")


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    """A save_pretrained directory of a random GPT-2 (3 layers, d_model 64), its weights drawn large."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=64, n_head=4, vocab_size=200, n_positions=64,
                                    bos_token_id=0, eos_token_id=0)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1 if p.ndim == 1 and p.shape[0] == 64 else 0))
    out = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(out)
    return out


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 200, (4, 20), generator=torch.Generator().manual_seed(seed))


def test_forward_cache_and_hooks_equal_the_cpu(directory):
    cpu = HookedTransformer.from_pretrained(directory, device="cpu")
    gpu = HookedTransformer.from_pretrained(directory, device=DEVICE)
    toks = tokens()
    expected, cpu_cache = cpu.run_with_cache(toks)
    logits, cache = gpu.run_with_cache(toks.to(DEVICE))
    assert logits.device.type == DEVICE and cache["resid_post", 2].device.type == DEVICE
    torch.testing.assert_close(logits.cpu(), expected, atol=1e-3, rtol=1e-3)
    for name in ("pattern", "z", "resid_post"):
        torch.testing.assert_close(cache[name, 1].cpu(), cpu_cache[name, 1], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(cache.to("cpu")["resid_pre", 0], cpu_cache["resid_pre", 0])

    def ablate(z, hook):
        z[:, :, 0] = 0.0
        return z

    hooks = [("blocks.1.attn.hook_z", ablate)]
    torch.testing.assert_close(gpu.run_with_hooks(toks.to(DEVICE), fwd_hooks=hooks).cpu(),
                               cpu.run_with_hooks(toks, fwd_hooks=hooks), atol=1e-3, rtol=1e-3)


def test_half_precision_on_the_device(directory):
    cpu = HookedTransformer.from_pretrained(directory, device="cpu")
    for dtype in (torch.bfloat16, torch.float16):
        model = HookedTransformer.from_pretrained(directory, device=DEVICE, dtype=dtype)
        assert model.W_Q.dtype == dtype and model.W_Q.device.type == DEVICE
        logits = model(tokens().to(DEVICE)).float().cpu()
        expected = cpu(tokens())
        agree = (logits.argmax(-1) == expected.argmax(-1)).float().mean()
        assert agree > 0.9, (dtype, agree)  # 16 bits: the same top token almost everywhere


def test_patching_maps_equal_the_cpu(directory):
    cpu = HookedTransformer.from_pretrained(directory, device="cpu")
    gpu = HookedTransformer.from_pretrained(directory, device=DEVICE)
    clean, corrupted = tokens(1), tokens(1).clone()
    corrupted[:, 8] = (corrupted[:, 8] + 1) % 200

    def metric(logits):
        return logits[:, -1, 5].mean()

    maps = []
    for model in (cpu, gpu):
        _, cache = model.run_with_cache(clean.to(model.cfg.device))
        corrupted_here = corrupted.to(model.cfg.device)
        maps.append([patching.get_act_patch_resid_pre(model, corrupted_here, cache, metric).cpu(),
                     patching.get_act_patch_attn_head_out_all_pos(model, corrupted_here, cache, metric).cpu()])
    for on_cpu, on_gpu in zip(*maps, strict=True):
        torch.testing.assert_close(on_gpu, on_cpu, atol=1e-3, rtol=1e-3)


def test_generate_with_the_cache_gives_the_cpu_tokens(directory):
    cpu = HookedTransformer.from_pretrained(directory, device="cpu")
    gpu = HookedTransformer.from_pretrained(directory, device=DEVICE)
    kwargs = dict(max_new_tokens=12, do_sample=False, stop_at_eos=False, verbose=False)
    prompt = tokens()[:2, :6]
    expected = cpu.generate(prompt, **kwargs)
    assert torch.equal(gpu.generate(prompt.to(DEVICE), **kwargs).cpu(), expected)
    assert torch.equal(gpu.generate(prompt.to(DEVICE), use_past_kv_cache=False, **kwargs).cpu(), expected)


def test_a_device_map_over_the_device_and_the_cpu(directory, tmp_path):
    cpu = HookedTransformer.from_pretrained(directory, device="cpu")
    device_map = {"embed": DEVICE, "pos_embed": DEVICE, "blocks.0": DEVICE, "blocks.1": "cpu", "blocks.2": DEVICE,
                  "ln_final": DEVICE, "unembed": "disk"}
    split = HookedTransformer.from_pretrained(directory, device_map=device_map, offload_folder=tmp_path / "offload")
    toks = tokens()
    logits, cache = split.run_with_cache(toks)
    torch.testing.assert_close(logits.cpu(), cpu(toks), atol=1e-3, rtol=1e-3)
    assert cache["resid_post", 2].device.type == DEVICE
