"""TransformerLens 3.5.1's hooks on identical weights vs helpers', for the families beyond GPT-2.

Run from the repository root with a Python that has transformer_lens==3.5.1 (a scratch venv outside the repo, which
brings its own transformers): ``/tmp/tl/bin/python -m bench.tl_families [Llama Qwen2 ...]``. Each family's tiny
random model of tests/unit/test_families.py is loaded by both libraries without processing; the script prints the
logits' distance to transformers for each, the largest difference over the hook points they share, the hooks whose
shapes differ and the hooks only one of them has. TransformerLens builds its config from the saved directory where
it can (Llama, Qwen 2 and 3, Mistral, GPT-NeoX) and from its own table otherwise (Gemma, Gemma 2 and 3, OLMo 2: only
by model name there), here with the tiny sizes.
"""

import logging
import sys
import tempfile
import warnings
from types import SimpleNamespace

import torch
import transformer_lens as tl
from transformer_lens import HookedTransformerConfig as TLC
from transformer_lens import loading_from_pretrained as L

from helpers import HookedTransformer as Ours
from tests.unit.test_families import CASES, hf_model, tokens

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

def tl_cfg(arch, directory, hf):
    c = hf.config
    if arch in ("Gemma3", "Gemma3Multimodal"):  # TL's own table too; its multimodal conversion reads the text part
        t = c.text_config if arch == "Gemma3Multimodal" else c
        full, sliding = t.rope_parameters["full_attention"], t.rope_parameters["sliding_attention"]
        return TLC(d_model=t.hidden_size, d_head=t.head_dim, n_heads=t.num_attention_heads, d_mlp=t.intermediate_size,
                   n_layers=t.num_hidden_layers, n_ctx=64, eps=t.rms_norm_eps, d_vocab=t.vocab_size,
                   act_fn="gelu_pytorch_tanh", normalization_type="RMS", rotary_base=full["rope_theta"],
                   rotary_base_local=sliding["rope_theta"], rotary_scaling_factor=full.get("factor", 1.0),
                   positional_embedding_type="rotary", rotary_dim=t.head_dim, n_key_value_heads=t.num_key_value_heads,
                   gated_mlp=True, final_rms=True, use_normalization_before_and_after=True, use_qk_norm=True,
                   window_size=t.sliding_window, use_local_attn=True,
                   attn_types=["local" if k == "sliding_attention" else "global" for k in t.layer_types],
                   attn_scale=t.query_pre_attn_scalar ** 0.5, original_architecture=CASES[arch][1], device="cpu")
    if arch in ("Gemma", "Gemma2", "Olmo2"):  # TL reads these from its own table: the same fields, tiny sizes
        d_head = c.head_dim if arch != "Olmo2" else c.hidden_size // c.num_attention_heads
        d = dict(d_model=c.hidden_size, d_head=d_head,
                 n_heads=c.num_attention_heads, d_mlp=c.intermediate_size, n_layers=c.num_hidden_layers, n_ctx=64,
                 eps=c.rms_norm_eps, d_vocab=c.vocab_size, act_fn="gelu_pytorch_tanh" if arch != "Olmo2" else "silu",
                 normalization_type="RMS", rotary_base=10000.0, positional_embedding_type="rotary",
                 gated_mlp=True, final_rms=True, original_architecture=f"{arch}ForCausalLM")
        d["rotary_dim"] = d["d_head"]
        if arch != "Olmo2":
            d["n_key_value_heads"] = c.num_key_value_heads
        if arch == "Gemma2":
            d.update(window_size=c.sliding_window, use_local_attn=True,
                     attn_types=["local" if t == "sliding_attention" else "global" for t in c.layer_types],
                     attn_scores_soft_cap=c.attn_logit_softcapping, output_logits_soft_cap=c.final_logit_softcapping,
                     use_normalization_before_and_after=True, attn_scale=c.query_pre_attn_scalar ** 0.5)
        return TLC(**d, device="cpu")
    d = L.convert_hf_model_config(str(directory))
    d.pop("n_params", None)
    d["tokenizer_name"] = None
    if arch == "Llama":  # TL reads Llama 3's rope scaling only for its own model names: given here
        r = c.rope_parameters
        d.update(use_NTK_by_parts_rope=True, NTK_by_parts_factor=r["factor"],
                 NTK_by_parts_low_freq_factor=r["low_freq_factor"], NTK_by_parts_high_freq_factor=r["high_freq_factor"],
                 NTK_original_ctx_len=r["original_max_position_embeddings"],
                 rotary_base=r["rope_theta"])
    return TLC(**{k: v for k, v in d.items() if k in TLC.__dataclass_fields__}, device="cpu")

def main(archs: list[str]) -> None:
    toks = tokens()
    for arch in archs or CASES:
        hf = hf_model(arch)
        with tempfile.TemporaryDirectory() as directory:
            hf.save_pretrained(directory)
            ours = Ours.from_pretrained_no_processing(directory, device="cpu")
            cfg = tl_cfg(arch, directory, hf)
            source = hf
            if arch == "GPTNeoX":
                hf.embed_out = hf.lm_head  # TL 3.5.1 reads transformers 4's name
            if arch == "Gemma3Multimodal":  # TL 3.5.1 looks for transformers 4's language_model: given its text model
                source = SimpleNamespace(model=hf.model.language_model, lm_head=hf.lm_head)
                cfg.original_architecture = "Gemma3ForCausalLM"
            sd = L.get_pretrained_state_dict(directory, cfg, hf_model=source)
            theirs = tl.HookedTransformer(cfg)
            theirs.load_and_process_state_dict(sd, fold_ln=False, center_writing_weights=False, center_unembed=False,
                                               fold_value_biases=False, refactor_factored_attn_matrices=False)
        with torch.no_grad():
            ref = hf(toks).logits
            lo, co = ours.run_with_cache(toks)
            lt, ct = theirs.run_with_cache(toks)
        common = sorted(set(co.keys()) & set(ct.keys()))
        shape_diff = [k for k in common if co[k].shape != ct[k].shape]
        diffs = {k: (co[k] - ct[k]).nan_to_num(0.0, 0.0, 0.0).abs().max().item() if k.endswith("attn_scores")
                 else (co[k] - ct[k]).abs().max().item() for k in common if k not in shape_diff}
        worst = sorted(diffs.items(), key=lambda kv: -kv[1])[:5]
        only_ours = sorted(set(co.keys()) - set(ct.keys()))
        only_tl = sorted(set(ct.keys()) - set(co.keys()))
        print(f"== {arch}: logits ours-HF {(lo-ref).abs().max():.1e}, TL-HF {(lt-ref).abs().max():.1e}; "
              f"{len(common)} common hooks, max diff {max(diffs.values()):.1e} "
              f"(worst {[(k, f'{v:.1e}') for k, v in worst]})")
        if shape_diff:
            print("   shapes differ:", [(k, tuple(co[k].shape), tuple(ct[k].shape)) for k in shape_diff[:6]])
        print("   only helpers:", [k for k in only_ours if k.startswith(("blocks.0", "hook", "ln_final"))])
        print("   only TL:", [k for k in only_tl if k.startswith(("blocks.0", "hook", "ln_final"))])


if __name__ == "__main__":
    main(sys.argv[1:])
