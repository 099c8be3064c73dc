"""Sparse autoencoders (SAEs) on a model's activations, in SAELens' format, and steering.

An SAE writes an activation x [d_in] as a sparse, non-negative combination of ``d_sae`` learned directions
(the rows of ``W_dec``) plus a bias. Three architectures, with SAELens' formulas::

    x' = normalize(x) - b_dec * apply_b_dec_to_input
    pre = x' @ W_enc + b_enc                                   hook_sae_acts_pre   [... d_sae]
    acts = ReLU(pre)                      (standard)
         = ReLU(pre) * (pre > ReLU(threshold))      (jumprelu)
         = ReLU of the k largest pre, 0 elsewhere    (topk; pre * |W_dec row| first if
                                                      rescale_acts_by_decoder_norm)
                                                               hook_sae_acts_post  [... d_sae]
    recons = acts @ W_dec + b_dec                              hook_sae_recons     [... d_in]
    output = denormalize(recons)                               hook_sae_output

On disk (SAELens): a folder with ``cfg.json`` and ``sae_weights.safetensors`` (W_enc [d_in d_sae], b_enc,
W_dec [d_sae d_in], b_dec, and threshold for JumpReLU). SAELens 6 nests the model's hook in
``cfg["metadata"]["hook_name"]``; older releases keep a flat cfg.json (``hook_name`` or ``hook_point``).
Gemma Scope (Gemma 2's JumpReLU SAEs, ``google/gemma-scope-*``) has no cfg.json: one ``params.npz`` per folder
``layer_<L>/width_<W>/average_l0_<N>``, the hook given by the repository's name (``-res``: blocks.L.hook_resid_post,
``-mlp``: blocks.L.hook_mlp_out), the input used as it is (no b_dec subtracted).
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import plotly.express as px
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from helpers import hub
from helpers.hook_points import HookedRootModule, HookPoint
from helpers.ioi import ioi_eval_prompts

ARCHITECTURES = ("standard", "topk", "jumprelu")
NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")
CFG_FILENAME, WEIGHTS_FILENAME = "cfg.json", "sae_weights.safetensors"
#: Gemma Scope's repositories (google/gemma-scope-2b-pt-res, -9b-it-mlp...): the site is the name's last part.
GEMMA_SCOPE = re.compile(r"google/gemma-scope-[\w.-]+-(res|mlp|att|transcoders)")
GEMMA_SCOPE_HOOKS = {"res": "blocks.{}.hook_resid_post", "mlp": "blocks.{}.hook_mlp_out"}
# notebook 10's SAE on course-gpt2 (4 layers, d_model 256) at its hook blocks.2.hook_resid_pre, made by its training
# cell (train_sae on story_tokens(model, 400, seed=0) with d_sae=1024, k=16, steps=300, batch_size=1024, seed=0;
# 2 torch threads, 106 s on a loaded 2-core AMD EPYC (AVX-512), 06/12/2026) and shipped so that the feature reading
# does not depend on the last bits of the training (threads, CPU instruction set); its weights are stored in
# float16 (1.05 MB, within the 50 MB of all shipped weights) and read back in its cfg's float32
COURSE_SAE_DIR = Path(__file__).resolve().parent.parent / "data" / "saes" / "course-gpt2-blocks.2.hook_resid_pre"
SAE_LENS_VERSION = "6.0.0"  # what the cfg.json we write says it follows (SAELens reads it as its 6.x layout)
# keys of a SAELens 6 cfg.json that live under "metadata"
METADATA_KEYS = ("model_name", "hook_name", "hook_head_index", "prepend_bos", "context_size", "dataset_path",
                 "model_class_name", "model_from_pretrained_kwargs", "exclude_special_tokens", "neuronpedia_id",
                 "seqpos_slice", "sae_lens_training_version")


# ================================================================================================
# Config
# ================================================================================================


@dataclass
class SAEConfig:
    """What an SAE is: its architecture and sizes, how it treats its input, and the model hook it reads."""

    architecture: str
    d_in: int
    d_sae: int
    k: int | None = None  # topk only: how many features are active per token
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    rescale_acts_by_decoder_norm: bool = False  # topk only
    dtype: str = "float32"
    device: str = "cpu"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture={self.architecture!r} is not supported; use one of {ARCHITECTURES}.")
        if self.architecture == "topk" and not (isinstance(self.k, int) and 0 < self.k <= self.d_sae):
            raise ValueError(f"A topk SAE needs k, an integer between 1 and d_sae={self.d_sae}; got k={self.k!r}.")
        if self.normalize_activations not in NORMALIZATIONS:
            raise ValueError(f"normalize_activations={self.normalize_activations!r}: use one of {NORMALIZATIONS}.")

    @property
    def hook_name(self) -> str | None:
        """The model's hook point this SAE reads and writes, e.g. ``blocks.1.hook_resid_pre``."""
        return self.metadata.get("hook_name")

    def to_dict(self) -> dict:
        """The cfg.json of SAELens 6."""
        d = asdict(self)
        if self.architecture != "topk":
            del d["k"], d["rescale_acts_by_decoder_norm"]
        d["reshape_activations"] = "none"
        d["metadata"] = {"sae_lens_version": SAE_LENS_VERSION, **self.metadata}
        return d

    def to_flat_dict(self) -> dict:
        """The flat cfg.json of SAELens before 6 (activation_fn and hook_name at the top level)."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("metadata", "k", "reshape_activations")}
        d.update(self.metadata)
        d["activation_fn"] = "topk" if self.architecture == "topk" else "relu"
        if self.architecture == "topk":
            d["activation_fn_kwargs"] = {"k": self.k}
        d["finetuning_scaling_factor"] = False
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SAEConfig:
        """Read either layout: SAELens 6 (``metadata``) or the older flat one (``hook_point``,
        ``activation_fn_str``, ``activation_fn_kwargs``, a boolean ``normalize_activations``...)."""
        d = dict(d)
        metadata = {k: v for k, v in d.pop("metadata", {}).items() if k != "sae_lens_version"}
        for old, new in (("hook_point", "hook_name"), ("hook_point_head_index", "hook_head_index"),
                         ("activation_fn_str", "activation_fn")):
            if old in d:
                d.setdefault(new, d.pop(old))
        for key in METADATA_KEYS:
            if key in d:
                metadata.setdefault(key, d.pop(key))
        architecture = d.get("architecture", "standard")
        k = d.get("k")
        if d.get("activation_fn") == "topk":
            architecture, k = "topk", d.get("activation_fn_kwargs", {}).get("k", k)
        normalize = d.get("normalize_activations")
        if isinstance(normalize, bool) or normalize is None:
            normalize = "expected_average_only_in" if normalize else "none"
        if d.get("finetuning_scaling_factor"):
            raise ValueError("This SAE uses a finetuning scaling factor, which helpers.sae does not implement.")
        if d.get("reshape_activations", "none") != "none":
            raise ValueError(f"reshape_activations={d['reshape_activations']!r} (an SAE on hook_z) is not supported.")
        missing = [key for key in ("d_in", "d_sae") if key not in d]
        if missing:
            raise ValueError(f"cfg.json has no {missing}: is it an SAE config?")
        return cls(architecture=architecture, d_in=d["d_in"], d_sae=d["d_sae"], k=k,
                   apply_b_dec_to_input=d.get("apply_b_dec_to_input", True), normalize_activations=normalize,
                   rescale_acts_by_decoder_norm=d.get("rescale_acts_by_decoder_norm", False),
                   dtype=str(d.get("dtype", "float32")).removeprefix("torch."), metadata=metadata)


# ================================================================================================
# The SAE
# ================================================================================================


class SAE(HookedRootModule):
    """A sparse autoencoder with hook points, as SAELens names them (``hook_sae_acts_post``...)."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        dtype = getattr(torch, cfg.dtype)
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae, dtype=dtype, device=cfg.device))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype, device=cfg.device))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in, dtype=dtype, device=cfg.device))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype, device=cfg.device))
        if cfg.architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype, device=cfg.device))
        self.hook_sae_input = HookPoint()
        self.hook_sae_acts_pre = HookPoint()
        self.hook_sae_acts_post = HookPoint()
        self.hook_sae_recons = HookPoint()
        self.hook_sae_output = HookPoint()
        self._norm_state = None  # what normalize() removed, for decode to put back
        self.setup()

    # ----- the formulas ------------------------------------------------------------------------

    def _point(self, hook: HookPoint, x: torch.Tensor, hooked: bool) -> torch.Tensor:
        return hook(x) if hooked else x

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """SAELens' run-time normalisation ("expected_average_only_in" is folded into the weights when a
        release is loaded, so it does nothing here, as in SAELens)."""
        mode = self.cfg.normalize_activations
        if mode == "constant_norm_rescale":
            scale = math.sqrt(self.cfg.d_in) / x.norm(dim=-1, keepdim=True)
            self._norm_state = (None, scale)
            return x * scale
        if mode == "layer_norm":
            mu = x.mean(-1, keepdim=True)
            std = (x - mu).std(-1, keepdim=True)
            self._norm_state = (mu, std)
            return (x - mu) / (std + 1e-5)
        return x

    def _denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.cfg.normalize_activations
        if mode == "constant_norm_rescale":
            return x / self._norm_state[1]
        if mode == "layer_norm":
            mu, std = self._norm_state
            return x * std + mu
        return x

    def check_width(self, width: int, where: str = "its input") -> None:
        """Raise a ValueError that says what to do unless ``width`` (of the activation at ``where``) is d_in."""
        if width == self.cfg.d_in:
            return
        model_name = self.cfg.metadata.get("model_name", "an unnamed model")
        trained = (f"trained on {model_name} at {self.cfg.hook_name}" if self.cfg.hook_name
                   else "whose hook is not recorded in its cfg.json")
        raise ValueError(f"This SAE ({trained}) reads activations of width d_in={self.cfg.d_in}, but {where} has width "
                         f"{width}: it was made for another model, another version of this model or another hook. "
                         "Load an SAE trained at this model's hook (same width), or train one with "
                         "helpers.sae.train_sae(model, hook_name, tokens).")

    def check_model(self, model, hook_name: str | None = None) -> None:
        """Check that ``model`` has the hook ``hook_name`` (default: the SAE's own) and that its activation there
        has width d_in, with one BOS-only forward; a clear error otherwise."""
        hook_name = hook_name or self.cfg.hook_name
        if hook_name is None:
            raise ValueError("This SAE's cfg.json records no hook: pass the hook_name it reads.")
        if hook_name not in model.hook_dict:
            raise KeyError(f"{hook_name!r} is not a hook point of {model.cfg.model_name}: pass the hook_name this SAE "
                           "reads, e.g. 'blocks.1.hook_resid_pre'.")
        bos = torch.zeros(1, 1, dtype=torch.long, device=model.W_E.device)
        with torch.no_grad():
            width = hook_acts(model, hook_name, bos).shape[-1]
        self.check_width(width, f"the activation of {model.cfg.model_name} at {hook_name}")

    def _encode(self, x: torch.Tensor, hooked: bool = True) -> torch.Tensor:
        self.check_width(x.shape[-1])
        x = self._point(self.hook_sae_input, x.to(self.W_enc.dtype), hooked)
        x = self._normalize(x) - self.b_dec * self.cfg.apply_b_dec_to_input
        pre = self._point(self.hook_sae_acts_pre, x @ self.W_enc + self.b_enc, hooked)
        return self._point(self.hook_sae_acts_post, self._activation(pre), hooked)

    def _activation(self, pre: torch.Tensor) -> torch.Tensor:
        """Feature activations from pre-activations [... d_sae]."""
        if self.cfg.architecture == "standard":
            return pre.relu()
        if self.cfg.architecture == "jumprelu":
            return pre.relu() * (pre > self.threshold.relu())
        if self.cfg.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        top = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())

    def _decode(self, acts: torch.Tensor, hooked: bool = True) -> torch.Tensor:
        if self.cfg.architecture == "topk" and self.cfg.rescale_acts_by_decoder_norm:
            acts = acts / self.W_dec.norm(dim=-1)
        recons = self._point(self.hook_sae_recons, acts @ self.W_dec + self.b_dec, hooked)
        return self._denormalize(recons)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations: [... d_in] -> [... d_sae]."""
        return self._encode(x)

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """Reconstruction from feature activations: [... d_sae] -> [... d_in]."""
        return self._decode(acts)

    def forward(self, x: torch.Tensor, use_error_term: bool = False) -> torch.Tensor:
        """Reconstruction of x [... d_in]. With ``use_error_term``, plus the error of the hook-free
        reconstruction: the output is x itself unless a hook on the SAE changed something."""
        out = self._decode(self._encode(x))
        if use_error_term:
            with torch.no_grad():
                out = out + (x - self._decode(self._encode(x, hooked=False), hooked=False))
        return self.hook_sae_output(out)

    # ----- disk ----------------------------------------------------------------------------------

    def save(self, path: str | Path, layout: str = "v6") -> Path:
        """Write ``cfg.json`` and ``sae_weights.safetensors`` in ``path`` (layout "v6": SAELens 6; "flat":
        the older flat cfg.json). Returns the folder."""
        if layout not in ("v6", "flat"):
            raise ValueError(f"layout={layout!r}: use 'v6' (SAELens 6) or 'flat' (SAELens before 6).")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, path / WEIGHTS_FILENAME)
        cfg = self.cfg.to_dict() if layout == "v6" else self.cfg.to_flat_dict()
        (path / CFG_FILENAME).write_text(json.dumps(cfg, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", model=None) -> SAE:
        """An SAE from a folder in SAELens' format (either layout of cfg.json), on ``device`` (the device
        recorded in cfg.json is where it was trained, as SAELens, it is not used). With ``model``, check that
        the SAE fits the model's activation at its hook (check_model)."""
        path = Path(path)
        for name in (CFG_FILENAME, WEIGHTS_FILENAME):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name} is missing: an SAE folder in SAELens' format holds "
                                        f"{CFG_FILENAME} and {WEIGHTS_FILENAME}.")
        cfg = SAEConfig.from_dict(json.loads((path / CFG_FILENAME).read_text()))
        cfg.device = device
        weights = load_file(path / WEIGHTS_FILENAME)
        if "log_threshold" in weights:  # older JumpReLU checkpoints
            weights["threshold"] = weights.pop("log_threshold").exp()
        return cls._with_weights(cfg, weights, path / WEIGHTS_FILENAME, model)

    @classmethod
    def load_gemma_scope(cls, params: str | Path, hook_name: str, device: str = "cpu", model=None) -> SAE:
        """A Gemma Scope SAE from its ``params.npz`` (W_enc [d_in d_sae], W_dec, b_enc, b_dec, threshold), reading
        and writing ``hook_name``; with ``model``, checked against it (check_model)."""
        with np.load(params, allow_pickle=False) as npz:
            weights = {k: torch.from_numpy(npz[k]) for k in npz.files}
        if "W_enc" not in weights or weights["W_enc"].ndim != 2:
            raise ValueError(f"{params} has no 2-D W_enc (it holds {sorted(weights)}): it is not a Gemma Scope SAE.")
        d_in, d_sae = weights["W_enc"].shape
        cfg = SAEConfig("jumprelu", d_in, d_sae, apply_b_dec_to_input=False, device=device,
                        metadata={"hook_name": hook_name})
        return cls._with_weights(cfg, weights, Path(params), model)

    @classmethod
    def _with_weights(cls, cfg: SAEConfig, weights: dict[str, torch.Tensor], where: Path, model=None) -> SAE:
        """The SAE of ``cfg`` holding ``weights`` (read from ``where``), their shapes checked."""
        sae = cls(cfg)
        expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in weights.items()}
        if got != expected:
            raise ValueError(f"{where} holds {got}; a {cfg.architecture} SAE with d_in={cfg.d_in}, "
                             f"d_sae={cfg.d_sae} needs {expected}.")
        sae.load_state_dict({k: v.to(sae.W_enc.dtype) for k, v in weights.items()})
        if model is not None:
            sae.check_model(model)
        return sae


def load_pretrained_sae(repo: str, folder: str, device: str = "cpu", model=None) -> SAE:
    """An SAE of a Hub repository in SAELens' format, e.g. ``("jbloom/GPT2-Small-SAEs-Reformatted",
    "blocks.8.hook_resid_pre")``, or of Gemma Scope, e.g. ``("google/gemma-scope-2b-pt-res",
    "layer_20/width_16k/average_l0_71")`` (for gemma-2-2b): the cached copy, else a download. Offline, the error
    gives the ``hf download`` command that puts it in the cache. With ``model``, checked against it
    (SAE.check_model)."""
    scope = GEMMA_SCOPE.fullmatch(repo)
    if scope:
        site, layer = scope.group(1), re.match(r"layer_(\d+)/", folder)
        if site not in GEMMA_SCOPE_HOOKS:
            raise ValueError(f"{repo}: Gemma Scope's {site} SAEs are not supported (the attention ones read hook_z "
                             "with its heads concatenated, the transcoders map one hook to another); use a -res or "
                             "-mlp repository.")
        if layer is None:
            raise ValueError(f"folder={folder!r}: a Gemma Scope SAE is a folder layer_<L>/width_<W>/average_l0_<N>, "
                             "e.g. 'layer_20/width_16k/average_l0_71' (the repository lists them).")
    names = ["params.npz"] if scope else [CFG_FILENAME, WEIGHTS_FILENAME]
    try:
        paths = [hub._hub_file(repo, f"{folder}/{name}") for name in names]
    except hub._NotAvailable as e:
        raise hub.HubUnavailableError(hub._unavailable_message(f"the SAE {repo}/{folder}", e)) from None
    if scope:
        hook = GEMMA_SCOPE_HOOKS[scope.group(1)].format(layer.group(1))
        return SAE.load_gemma_scope(paths[0], hook, device=device, model=model)
    return SAE.load(Path(paths[1]).parent, device=device, model=model)


# ================================================================================================
# Splicing an SAE into a model
# ================================================================================================


def splice_hook(sae: SAE, use_error_term: bool = False, keep_bos: bool = True):
    """A hook for ``sae.cfg.hook_name`` that replaces the activation by the SAE's reconstruction.

    ``use_error_term``: add back what the SAE misses, so that the model runs unchanged unless a hook on
    the SAE (``sae.hooks(...)``) edits its features. ``keep_bos``: leave position 0 alone (the BOS
    residual, huge and constant, is not what SAEs are trained on). Use it with ``model.run_with_hooks``,
    ``model.hooks()`` or around ``model.run_with_cache``.
    """

    def hook(activation: torch.Tensor, hook) -> torch.Tensor:
        sae.check_width(activation.shape[-1], f"the activation at {hook.name}")
        out = sae(activation, use_error_term=use_error_term).to(activation.dtype)
        if keep_bos:
            out = torch.cat([activation[:, :1], out[:, 1:]], dim=1)
        return out

    return hook


# ================================================================================================
# Data, activations and training
# ================================================================================================


def story_tokens(model, n_sequences: int, seed: int = 0, prompts_per_story: int = 4) -> torch.Tensor:
    """Token ids [n_sequences pos] of short stories made of complete IOI sentences ("... lent the ball to
    Judy."), from the validation prompt set: training places and objects, unseen templates (the test set's
    places and objects are absent from the course models' training text). BOS first, right-padded."""
    n = n_sequences * prompts_per_story
    sentences = [p.prompt + p.io + "." for p in ioi_eval_prompts(n, seed, "validation")]
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    stories = [" ".join(sentences[j] for j in order[i:i + prompts_per_story]) for i in range(0, n, prompts_per_story)]
    return model.to_tokens(stories)


def token_mask(model, tokens: torch.Tensor) -> torch.Tensor:
    """[batch pos] bool: the positions that count, neither BOS (position 0) nor padding."""
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[:, 0] = False
    pad = model.tokenizer.pad_token_id if model.tokenizer is not None else None
    if pad is not None:
        mask &= tokens != pad
    return mask


@torch.no_grad()
def hook_acts(model, hook_name: str, tokens: torch.Tensor) -> torch.Tensor:
    """The activation at ``hook_name`` of every position of tokens [batch pos] -> [batch pos d], running the
    model no further than the hook's block (see collect_activations for the positions that count only)."""
    block = re.match(r"blocks\.(\d+)\.", hook_name)
    stop = int(block.group(1)) + 1 if block else None
    return model.run_with_cache(tokens, names_filter=hook_name, stop_at_layer=stop)[1][hook_name]


@torch.no_grad()
def collect_activations(model, hook_name: str, tokens: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The activations at ``hook_name`` of the positions that count (see token_mask): [n_tokens d]."""
    if hook_name not in model.hook_dict:
        raise KeyError(f"{hook_name!r} is not a hook point of the model, e.g. 'blocks.1.hook_resid_pre'.")
    return torch.cat([hook_acts(model, hook_name, batch)[token_mask(model, batch)]
                      for batch in tokens.split(batch_size)])


def _aux_k_loss(sae: SAE, x: torch.Tensor, pre: torch.Tensor, recons: torch.Tensor, dead: torch.Tensor,
                k_aux: int) -> torch.Tensor:
    """OpenAI's AuxK: the dead features' top k_aux pre-activations must reconstruct the residual error."""
    dead_ids = dead.nonzero()[:, 0]
    if len(dead_ids) == 0:
        return pre.new_zeros(())
    top = pre[:, dead_ids].topk(min(k_aux, len(dead_ids)), dim=-1)  # [batch k_aux], among the dead only
    aux = (top.values.relu()[..., None] * sae.W_dec[dead_ids[top.indices]]).sum(-2)
    error = (x - recons).detach()
    return (aux - error).pow(2).sum(-1).mean() / error.pow(2).sum(-1).mean()


def train_sae(model, hook_name: str, tokens: torch.Tensor, d_sae: int = 1024, k: int = 16, steps: int = 600,
              batch_size: int = 2048, lr: float = 1e-3, seed: int = 0, dead_after: int = 2048 * 100,
              aux_coef: float = 1 / 32, verbose: bool = True) -> SAE:
    """Train a TopK SAE on the activations of ``model`` at ``hook_name`` over ``tokens`` (BOS and padding left out).

    Adam on the reconstruction error normalised by the activations' variance, plus OpenAI's AuxK term
    for the features that have not fired for ``dead_after`` tokens; decoder rows kept at unit norm;
    ``b_dec`` starts at the activations' mean and the encoder at the decoder's transpose. Full activations
    in memory; the same seed (and the same threads) gives the same SAE.
    """
    acts = collect_activations(model, hook_name, tokens)
    n, d_in = acts.shape
    if n < batch_size:
        raise ValueError(f"Only {n} token activations for batch_size={batch_size}: pass more tokens or a smaller "
                         "batch_size.")
    cfg = SAEConfig("topk", d_in, d_sae, k=k, device=str(acts.device),
                    metadata={"model_name": model.cfg.model_name, "hook_name": hook_name, "prepend_bos": True,
                              "context_size": tokens.shape[1]})
    sae = SAE(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        W_dec = torch.randn(d_sae, d_in, generator=generator).to(acts.device)
        sae.W_dec.copy_(W_dec / W_dec.norm(dim=-1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_dec.copy_(acts.mean(0))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, 5 * (1 - s / steps)))  # last 20%
    since_fired = torch.zeros(d_sae, device=acts.device)
    with torch.enable_grad():
        for _ in tqdm(range(steps), desc="SAE", disable=not verbose):
            x = acts[torch.randint(n, (batch_size,), generator=generator).to(acts.device)]
            pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
            feats = sae._activation(pre)
            recons = feats @ sae.W_dec + sae.b_dec
            loss = (recons - x).pow(2).sum(-1).mean() / (x - x.mean(0)).pow(2).sum(-1).mean()
            fired = (feats > 0).any(0)
            since_fired = torch.where(fired, 0.0, since_fired + batch_size)
            loss = loss + aux_coef * _aux_k_loss(sae, x, pre, recons, since_fired >= dead_after, d_in // 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            decay.step()
            with torch.no_grad():
                sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True)
    sae.requires_grad_(False)
    return sae


# ================================================================================================
# Metrics
# ================================================================================================


def l0(feature_acts: torch.Tensor) -> float:
    """Mean number of active features per token; feature_acts [n_tokens d_sae] (only the tokens that count)."""
    return (feature_acts > 0).float().sum(-1).mean().item()


def explained_variance(x: torch.Tensor, recons: torch.Tensor) -> float:
    """1 - sum of squared errors / sum of squared deviations from the mean; x, recons [n_tokens d_in]."""
    return (1 - (x - recons).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


def dead_features(feature_acts: torch.Tensor) -> torch.Tensor:
    """[d_sae] bool: the features that never fire on these tokens; feature_acts [n_tokens d_sae]."""
    return ~(feature_acts > 0).any(0)


def masked_loss(model, tokens: torch.Tensor, fwd_hooks=()) -> float:
    """Mean next-token loss over the predictions whose target is a token that counts (no padding)."""
    losses = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=list(fwd_hooks))
    mask = token_mask(model, tokens)[:, 1:]
    return (losses[mask].sum() / mask.sum()).item()


@torch.no_grad()
def loss_recovered(model, sae: SAE, tokens: torch.Tensor) -> float:
    """(loss zero-ablated - loss with the SAE) / (loss zero-ablated - clean loss): 1 = the clean loss, 0 = the
    activation at ``sae.cfg.hook_name`` set to zero (both at every position but BOS); padding not counted."""

    def zero(activation, hook):
        out = activation.clone()
        out[:, 1:] = 0
        return out

    name = sae.cfg.hook_name
    clean = masked_loss(model, tokens)
    spliced = masked_loss(model, tokens, [(name, splice_hook(sae))])
    ablated = masked_loss(model, tokens, [(name, zero)])
    return (ablated - spliced) / (ablated - clean)


# ================================================================================================
# Reading a feature
# ================================================================================================


@torch.no_grad()
def feature_acts(model, sae: SAE, tokens: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """[batch pos d_sae] activations of every feature; 0 at BOS and padding."""
    return torch.cat([sae.encode(hook_acts(model, sae.cfg.hook_name, batch)) * token_mask(model, batch)[..., None]
                      for batch in tokens.split(batch_size)])


def _token_span(token: str, value: float, top: float, bold: bool) -> str:
    alpha = 0.0 if top <= 0 else max(0.0, value) / top
    style = f"background: rgba(255, 140, 0, {alpha:.2f}); white-space: pre;"
    if bold:
        style += " font-weight: bold; outline: 1px solid #c05000;"
    text = html.escape(token.replace("\n", "↵"))
    return f'<span style="{style}" title="{value:.2f}">{text}</span>'


def contexts_html(contexts: list[tuple[list[str], list[float], int]], title: str = "") -> str:
    """HTML of (str_tokens, activations, highlighted index) contexts, one per line, tokens shaded by activation."""
    top = max((max(values) for _, values, _ in contexts), default=0.0)
    lines = ["".join(_token_span(t, v, top, i == j) for i, (t, v) in enumerate(zip(toks, values, strict=True)))
             + f' <span style="color: #888">({values[j]:.2f})</span>' for toks, values, j in contexts]
    head = f"<b>{html.escape(title)}</b><br>" if title else ""
    return f'<div style="font-family: monospace; line-height: 1.8">{head}{"<br>".join(lines)}</div>'


def top_contexts(model, tokens: torch.Tensor, acts: torch.Tensor, n: int = 8, before: int = 10,
                 after: int = 3) -> list[tuple[list[str], list[float], int]]:
    """The ``n`` strongest activations of one feature, acts [batch pos], each as (str_tokens of the window
    around it, their activations, index of the activating token in the window)."""
    values, flat = acts.flatten().topk(min(n, int((acts > 0).sum())))
    out = []
    for i in flat.tolist():
        b, p = divmod(i, acts.shape[1])
        lo, hi = max(1, p - before), min(int(token_mask(model, tokens[b : b + 1])[0].sum()) + 1, p + after + 1)
        out.append((model.to_str_tokens(tokens[b, lo:hi]), acts[b, lo:hi].tolist(), p - lo))
    return out


def decoder_logit_effects(model, direction: torch.Tensor, n: int = 10) -> tuple[list, list]:
    """Tokens that a residual direction [d_model] promotes and suppresses through the unembedding (W_U only,
    no final LayerNorm): two lists of (token, effect), strongest first. Tokens whose W_U column is zero
    (never seen by a course model) are left out."""
    effects = direction @ model.W_U  # [d_vocab]
    known = model.W_U.norm(dim=0) > 0
    ids = known.nonzero()[:, 0]
    order = effects[ids].argsort(descending=True)
    pick = lambda idx: [(model.to_string(int(t)), effects[t].item()) for t in ids[idx]]  # noqa: E731
    return pick(order[:n]), pick(order.flip(0)[:n])


@dataclass(repr=False)
class FeatureDashboard:
    """What a feature does: where it fires most, how often and how strongly, and what it writes."""

    feature: int
    frequency: float  # fraction of the tokens that count where it fires
    max_activation: float
    contexts: list  # top_contexts
    promoted: list  # [(token, effect)]
    suppressed: list
    histogram: object  # plotly figure
    logits: object  # plotly figure

    @property
    def html(self) -> str:
        """The top contexts, tokens shaded by activation: what a notebook shows for ``display(dashboard)``."""
        return contexts_html(self.contexts, f"Feature {self.feature} : contextes les plus actifs")

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:  # rounded, so that a notebook's stored output does not hang on the last bits
        return (f"FeatureDashboard(feature={self.feature}, frequency={self.frequency:.1%}, "
                f"max_activation={self.max_activation:.2f})")

    def show(self) -> None:
        """Show the two figures (the contexts are shown by ``display(dashboard)``, or as a cell's last value)."""
        self.histogram.show()
        self.logits.show()


def feature_dashboard(model, sae: SAE, tokens: torch.Tensor, feature: int, acts: torch.Tensor | None = None,
                      n_contexts: int = 8, n_logits: int = 8) -> FeatureDashboard:
    """The dashboard of ``feature`` on ``tokens``; ``acts`` [batch pos d_sae] (feature_acts) if already computed."""
    if not 0 <= feature < sae.cfg.d_sae:
        raise IndexError(f"feature={feature}: this SAE has features 0 to {sae.cfg.d_sae - 1}.")
    acts = (feature_acts(model, sae, tokens) if acts is None else acts)[..., feature]
    counted = acts[token_mask(model, tokens)]
    fired = counted[counted > 0]
    promoted, suppressed = decoder_logit_effects(model, sae.W_dec[feature], n_logits)
    histogram = px.histogram(x=fired.cpu().numpy(), nbins=40, template="plotly",
                             labels={"x": "activation (quand elle est non nulle)"},
                             title=f"Feature {feature} : active sur {len(fired) / len(counted):.2%} des tokens")
    rows = promoted[::-1] + suppressed
    logits = px.bar(x=[v for _, v in rows], y=[repr(t) for t, _ in rows], orientation="h", template="plotly",
                    labels={"x": "effet direct sur le logit (W_dec @ W_U)", "y": "token"},
                    title=f"Feature {feature} : tokens promus (haut) et supprimés (bas)")
    logits.update_yaxes(categoryorder="array", categoryarray=[repr(t) for t, _ in rows][::-1])
    return FeatureDashboard(feature, len(fired) / len(counted), counted.max().item(),
                            top_contexts(model, tokens, acts, n_contexts), promoted, suppressed, histogram, logits)


# ================================================================================================
# Steering
# ================================================================================================


def steering_hook(direction: torch.Tensor, scale: float = 1.0, keep_bos: bool = True):
    """A hook that adds ``scale * direction`` [d_model] to the activation at every position (but BOS if
    ``keep_bos``). Works during a forward (run_with_hooks) and during ``model.generate`` (inside
    ``model.hooks(...)``): with its key/value cache the first step holds the prompt's positions (BOS first) and
    each later step the new position only, which is steered (without the cache every step reruns the whole
    sequence, steered the same way)."""

    def hook(activation: torch.Tensor, hook) -> torch.Tensor:
        out = activation.clone()
        out[:, int(keep_bos and activation.shape[1] > 1):] += scale * direction.to(activation.dtype)
        return out

    return hook


@torch.no_grad()
def mean_difference(model, hook_name: str, prompts_a: list[str], prompts_b: list[str],
                    last_only: bool = False) -> torch.Tensor:
    """Activation addition's vector: mean activation at ``hook_name`` over the tokens of ``prompts_a`` minus
    that over ``prompts_b`` (BOS and padding left out), or over their last tokens only if ``last_only``;
    [d_model]."""

    def mean(prompts: list[str]) -> torch.Tensor:
        tokens = model.to_tokens(prompts)
        if not last_only:
            return collect_activations(model, hook_name, tokens).mean(0)
        last = token_mask(model, tokens).sum(1)  # BOS is position 0, so this is the last real token
        return hook_acts(model, hook_name, tokens)[torch.arange(len(tokens)), last].mean(0)

    return mean(prompts_a) - mean(prompts_b)
