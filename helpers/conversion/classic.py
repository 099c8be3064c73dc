"""State dicts already in the classic format (``blocks.0.attn.W_Q`` ...): Neel Nanda's toy models and othello-gpt.

Nothing is renamed; the file gives the sizes (``sizes_from_state_dict``), the config gives the shape table
every tensor is checked against (``classic_shapes``), and the attention buffers some files carry are dropped
(``convert_classic_weights``).
"""

from __future__ import annotations

import torch

#: The tensors the sizes are read from, and their number of dimensions; loading checks they are there.
SIZE_TENSORS = (("blocks.0.attn.W_Q", 3), ("embed.W_E", 2), ("pos_embed.W_pos", 2))


def sizes_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """The sizes a classic state dict's tensors imply (for the published files, the registry's own); the
    tensors of ``SIZE_TENSORS`` must be there."""
    n_heads, d_model, d_head = sd["blocks.0.attn.W_Q"].shape  # [head d_model d_head]
    sizes = dict(n_layers=1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks.")),
                 d_model=d_model, n_heads=n_heads, d_head=d_head, d_vocab=sd["embed.W_E"].shape[0],
                 n_ctx=sd["pos_embed.W_pos"].shape[0])
    if "blocks.0.mlp.W_in" in sd:
        sizes["d_mlp"] = sd["blocks.0.mlp.W_in"].shape[1]
    return sizes


def classic_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    """The tensors of a classic-format state dict and their shapes, from its config dict ``c``."""
    d, h, e, v = c["d_model"], c["n_heads"], c["d_head"], c["d_vocab"]

    def ln(prefix: str, size: int) -> dict:
        return {f"{prefix}.w": (size,), f"{prefix}.b": (size,)} if c["normalization_type"] == "LN" else {}

    shapes = {"embed.W_E": (v, d), "pos_embed.W_pos": (c["n_ctx"], d), **ln("ln_final", d),
              "unembed.W_U": (d, v), "unembed.b_U": (v,)}
    for i in range(c["n_layers"]):
        b = f"blocks.{i}"
        shapes.update({**ln(f"{b}.ln1", d), **{f"{b}.attn.W_{x}": (h, d, e) for x in "QKV"},
                       **{f"{b}.attn.b_{x}": (h, e) for x in "QKV"}, f"{b}.attn.W_O": (h, e, d),
                       f"{b}.attn.b_O": (d,)})
        if not c.get("attn_only"):
            m = c["d_mlp"]
            shapes.update({**ln(f"{b}.ln2", d), f"{b}.mlp.W_in": (d, m), f"{b}.mlp.b_in": (m,),
                           f"{b}.mlp.W_out": (m, d), f"{b}.mlp.b_out": (d,),
                           **(ln(f"{b}.mlp.ln", m) if c["act_fn"] == "solu_ln" else {})})
    return shapes


def convert_classic_weights(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights in float32, without the non-weight buffers classic state dicts may carry (attention masks,
    IGNORE constants)."""
    return {k: v.float() for k, v in sd.items() if k.rsplit(".", 1)[-1] not in ("mask", "IGNORE")}
