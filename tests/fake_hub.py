"""A Hugging Face cache filled as ``hf download`` fills it, with random-weight models of the real repositories.

Built at test time (nothing here is committed weights). ``FakeHub(cache_dir, scale)`` knows, for each of the
course's real models, the repository's files (generated on demand) and ``hf_download(command)`` writes what
huggingface_hub 2.x writes for that command (read from its ``file_download`` / ``_snapshot_download`` code):

    <cache>/CACHEDIR.TAG
    <cache>/.locks/models--<org>--<name>/<etag>.lock
    <cache>/models--<org>--<name>/blobs/<etag>           etag: sha256 of an LFS file, git blob sha1 otherwise
    <cache>/models--<org>--<name>/snapshots/<commit>/<path> -> ../../blobs/<etag>   (relative symlink)
    <cache>/models--<org>--<name>/refs/main              the commit hash, no newline
    <cache>/models--<org>--<name>/trees/<commit>.json     the repository's full listing, written by
                                                          snapshot_download: any command with several
                                                          files or --include (one file: hf_hub_download, none)

Files of a repository that no command downloads are never generated: the listing gives them a size and ids
derived from their name (the real 163 SoLU checkpoints would be 35 GB).

Shapes: ``scale="small"`` shrinks every model to 2 layers (GPT-2 and DistilGPT-2 through their config.json;
SoLU-2L and Othello-GPT to width 64, sizes the loader reads from the weights files); ``scale="real"`` keeps
the real shapes: GPT-2 small 12 layers, d_model 768; SoLU 2L512W; Othello-GPT 8L512W; Qwen2.5-0.5B 24 layers,
d_model 896.

Tests add their own files and repositories (``add``, ``add_dir``), put files in the cache as a download would
(``cache``), and can let the loader download: ``serve(monkeypatch)`` puts this FakeHub in the Hub's place behind
huggingface_hub's ``hf_hub_download`` and ``list_repo_files`` and helpers.hub's reachability probe, while
``online`` is true. A download writes what hf_hub_download writes; the real hf_hub_download then reads it.

The repositories of the families beyond GPT-2 (Qwen 2.5 and 3, Pythia and its checkpoints, Llama 3.2, Mistral 7B,
Gemma 2, OLMo 2, ARENA's attn_only_2L_half and GPT-NeoX-20B's tokenizer) come from tests/fake_hub_families.py: their
real file layout, small random weights (Qwen2.5-0.5B at its real sizes when scale="real"). A revision other than
main (Pythia's ``step<N>``) is the repository key ``"<repo>@<revision>"`` here; ``hf download ... --revision
<revision>`` writes its ``refs/<revision>``.

Tokenizers: gpt2 and distilgpt2 carry the real GPT-2 tokenizer (data/tokenizer, saved by transformers).
NeelNanda/gpt-neox-tokenizer-digits is a stand-in built with the tokenizers library: the same size (48262),
the same special tokens (<|endoftext|> = 0, <|padding|> = 1), byte-level BPE with digits split one by one,
but its merges are synthetic (pairs of byte symbols), so it splits real text differently from the real one.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import shlex
import tempfile
from fnmatch import fnmatch
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_save

from helpers import HookedTransformer, HookedTransformerConfig, loading
from tests import fake_hub_families as families

# Label schedule of Neel Nanda's 512-wide C4+code toy models (tokens seen; 163 checkpoints, the same for all).
TOY_LABELS = [
    262144, 2621440, 4718592, 7077888, 9175040, 11272192, 13631488, 15728640, 18087936, 20185088, 22282240,
    33292288, 44302336, 55312384, 66322432, 77332480, 88342528, 99352576, 110362624, 121372672, 132382720,
    143392768, 154402816, 165412864, 176422912, 187432960, 198443008, 209453056, 220463104, 264503296, 308281344,
    352321536, 396361728, 440401920, 484442112, 528482304, 572522496, 616300544, 660340736, 704380928, 748421120,
    792461312, 836501504, 880279552, 924319744, 968359936, 1012400128, 1056440320, 1100480512, 1144520704,
    1188298752, 1232338944, 1276379136, 1320419328, 1364459520, 1408499712, 1452277760, 1496317952, 1540358144,
    1584398336, 1628438528, 1672478720, 1716518912, 1760296960, 1804337152, 1848377344, 1892417536, 1936457728,
    1980497920, 2024275968, 2068316160, 2112356352, 2156396544, 2200436736, 2420375552, 2640314368, 2860515328,
    3080454144, 3300392960, 3520331776, 3740270592, 3960471552, 4180410368, 4400349184, 4620288000, 4840488960,
    5060427776, 5280366592, 5500305408, 5720506368, 5940445184, 6160384000, 6380322816, 6600523776, 6820462592,
    7040401408, 7260340224, 7480279040, 7700480000, 7920418816, 8140357632, 8360296448, 8580497408, 8800436224,
    9020375040, 9240313856, 9460514816, 9680453632, 9900392448, 10120331264, 10340270080, 10560471040,
    10780409856, 11000348672, 11220287488, 11440488448, 11660427264, 11880366080, 12100304896, 12320505856,
    12540444672, 12760383488, 12980322304, 13200523264, 13420462080, 13640400896, 13860339712, 14080278528,
    14300479488, 14520418304, 14740357120, 14960295936, 15180496896, 15400435712, 15620374528, 15840313344,
    16060514304, 16280453120, 16500391936, 16720330752, 16940269568, 17160470528, 17380409344, 17600348160,
    17820286976, 18040487936, 18260426752, 18480365568, 18700304384, 18920505344, 19140444160, 19360382976,
    19580321792, 19800522752, 20020461568, 20240400384, 20460339200, 20680278016, 20900478976, 21120417792,
    21340356608, 21560295424, 21780496384,
]
SOLU = "NeelNanda/SoLU_2L512W_C4_Code"
ATTN_ONLY_2L = "NeelNanda/Attn_Only_2L512W_C4_Code"
GPT2_SAES = "jbloom/GPT2-Small-SAEs-Reformatted"  # notebook 10: one folder of SAELens files per hook
OTHELLO = "NeelNanda/Othello-GPT-Transformer-Lens"
GPT2_SHAPES = {  # (n_layer, n_embd, n_head) of the fake gpt2 / distilgpt2
    "small": {"gpt2": (2, 64, 4), "distilgpt2": (2, 64, 4)},
    "real": {"gpt2": (12, 768, 12), "distilgpt2": (6, 768, 12)},
}
LFS_SUFFIXES = (".safetensors", ".pth", ".bin", ".h5", ".msgpack", ".ot", ".onnx", ".tflite")
# Files the real repositories also hold, listed but never generated (no command here downloads them).
LISTED_ONLY = {
    "gpt2": [".gitattributes", "README.md", "64.tflite", "flax_model.msgpack", "merges.txt", "vocab.json",
             "pytorch_model.bin", "rust_model.ot", "tf_model.h5", "onnx/decoder_model.onnx"],
    "distilgpt2": [".gitattributes", "README.md", "flax_model.msgpack", "merges.txt", "vocab.json",
                   "pytorch_model.bin", "rust_model.ot", "tf_model.h5"],
    SOLU: [".gitattributes", "README.md", "config.json"],
    ATTN_ONLY_2L: [".gitattributes", "README.md", "config.json"],
    GPT2_SAES: [".gitattributes", "README.md"] + [f"blocks.{layer}.hook_resid_pre/{name}" for layer in range(12)
                                                   if layer != 8 for name in ("cfg.json", "sae_weights.safetensors")],
    loading.NEEL_TOKENIZER: [".gitattributes", "special_tokens_map.json", "tokenizer_config.json"],
    OTHELLO: [".gitattributes", "README.md", "board_seqs_int_small.npy", "board_seqs_string_small.npy"],
    **families.LISTED_ONLY,
}


def _sha1_blob(data: bytes) -> str:
    """Git's id of a file's contents."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _torch_bytes(state_dict: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


# scale="small": the classic models shrink to 2 layers of width 64 (the loader reads the sizes from the file).
SMALL_CLASSIC = dict(n_layers=2, d_model=64, d_head=16, n_heads=4, d_mlp=256)


@functools.cache
def _classic_shapes(official: str, scale: str) -> tuple[int, dict[str, tuple[int, ...]]]:
    """n_ctx and the parameter shapes of the registry's config for ``official`` (shrunk when scale is small)."""
    config = {**loading.MODELS[official].config, **(SMALL_CLASSIC if scale == "small" else {})}
    cfg = HookedTransformerConfig.from_dict({**config, "device": "cpu", "tokenizer_name": None})
    return cfg.n_ctx, {k: tuple(v.shape) for k, v in HookedTransformer(cfg).state_dict().items()}


def _random_classic(official: str, seed: int, scale: str) -> dict:
    """A classic-format state dict with the registry's shapes for ``official`` (or SMALL_CLASSIC's), random
    weights (LayerNorm weights near 1), and the attention buffers the published files carry (mask, IGNORE)."""
    n_ctx, shapes = _classic_shapes(official, scale)
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in shapes.items():
        scale = 1 / math.sqrt(shape[-2]) if name.split(".")[-1].startswith("W_") else 0.1
        sd[name] = torch.randn(shape, generator=gen) * scale + (1.0 if name.endswith(".w") else 0.0)
    for layer in {int(k.split(".")[1]) for k in shapes if k.startswith("blocks.")}:
        sd[f"blocks.{layer}.attn.mask"] = torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool))
        sd[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-1e5)
    return sd


def _gpt2_files(repo: str, scale: str) -> dict[str, bytes]:
    """config.json, generation_config.json, model.safetensors and tokenizer files, as save_pretrained writes."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from helpers.tokenizer import gpt2_tokenizer

    n_layer, n_embd, n_head = GPT2_SHAPES[scale][repo]
    torch.manual_seed(len(repo))
    model = GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head))
    with tempfile.TemporaryDirectory() as out:
        model.save_pretrained(out)
        gpt2_tokenizer().save_pretrained(out)
        return {p.name: p.read_bytes() for p in Path(out).iterdir()}


def jbloom_sae_files(d_in: int, expansion: int = 32, seed: int = 0) -> dict[str, bytes]:
    """One folder of jbloom/GPT2-Small-SAEs-Reformatted (a flat cfg.json of SAELens 0.x, the weights in
    sae_weights.safetensors), random weights; the real folders have d_in 768 and 24 576 features."""
    d_sae = expansion * d_in
    cfg = {"model_name": "gpt2-small", "hook_point": "blocks.8.hook_resid_pre", "hook_point_layer": 8,
           "hook_point_head_index": None, "dataset_path": "Skylion007/openwebtext", "context_size": 128,
           "d_in": d_in, "d_sae": d_sae, "expansion_factor": expansion, "device": "mps",
           "dtype": "torch.float32", "b_dec_init_method": "geometric_median", "l1_coefficient": 8e-05,
           "lr": 0.0004, "train_batch_size": 4096}
    g = torch.Generator().manual_seed(seed)
    weights = {"W_enc": torch.randn(d_in, d_sae, generator=g) / math.sqrt(d_in),
               "b_enc": torch.randn(d_sae, generator=g),
               "W_dec": torch.randn(d_sae, d_in, generator=g) / math.sqrt(d_sae),
               "b_dec": torch.randn(d_in, generator=g)}
    return {"cfg.json": json.dumps(cfg).encode(), "sae_weights.safetensors": safetensors_save(weights)}


def _neox_digits_tokenizer() -> bytes:
    """tokenizer.json of a byte-level BPE with 48262 tokens and GPT-NeoX's special tokens (see module doc)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    symbols = list(pre_tokenizers.ByteLevel.alphabet())
    symbols.sort()
    vocab = {"<|endoftext|>": 0, "<|padding|>": 1}
    for s in symbols:
        vocab[s] = len(vocab)
    merges = []
    for a in symbols:
        for b in symbols:
            if len(vocab) == 48262:
                break
            if a + b not in vocab:
                vocab[a + b] = len(vocab)
                merges.append((a, b))
    tokenizer = Tokenizer(BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                       pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|endoftext|>", "<|padding|>"])
    return tokenizer.to_str().encode()


class FakeHub:
    """The course's real repositories, with random weights, and an ``hf download`` that fills ``cache_dir``."""

    def __init__(self, cache_dir: Path, scale: str = "small"):
        if scale not in GPT2_SHAPES:
            raise ValueError(f"scale={scale!r}: expected 'small' or 'real'.")
        self.cache_dir, self.scale = Path(cache_dir), scale
        self.online, self.served = True, []  # used once serve() has put this FakeHub in the Hub's place
        self.gated: set[str] = set()  # repositories whose licence this (fake) login has not accepted
        self.listed_only = {repo: list(files) for repo, files in LISTED_ONLY.items()}
        stem = SOLU.split("/")[1]
        self.makers = {  # repo -> {path: function returning the file's bytes}
            "gpt2": self._lazy_dict(lambda: _gpt2_files("gpt2", scale)),
            "distilgpt2": self._lazy_dict(lambda: _gpt2_files("distilgpt2", scale)),
            SOLU: {"model_final.pth": lambda: _torch_bytes(_random_classic("solu-2l", 1000, scale)),
                   **{f"checkpoints/{stem}_{label}.pth":
                      (lambda i=i: _torch_bytes(_random_classic("solu-2l", i, scale)))
                      for i, label in enumerate(TOY_LABELS)}},
            ATTN_ONLY_2L: {"model_final.pth": lambda: _torch_bytes(_random_classic("attn-only-2l", 2000, scale))},
            loading.NEEL_TOKENIZER: {"tokenizer.json": _neox_digits_tokenizer},
            OTHELLO: {"synthetic_model.pth": lambda: _torch_bytes(_random_classic("othello-gpt", 7, scale))},
            GPT2_SAES: self._lazy_dict(
                lambda: {f"blocks.8.hook_resid_pre/{name}": data
                         for name, data in jbloom_sae_files(GPT2_SHAPES[scale]["gpt2"][1]).items()},
                [f"blocks.8.hook_resid_pre/{name}" for name in ("cfg.json", "sae_weights.safetensors")]),
            # The families beyond GPT-2 (tests/fake_hub_families.py), and Pythia's checkpoints as revisions.
            **{repo: self._lazy_dict(lambda repo=repo: families.repo_files(repo, scale=scale), self._family_names(repo))
               for repo in families.REPOS},
            **{f"{repo}@step{step}": self._lazy_dict(
                lambda repo=repo, step=step: families.pythia_checkpoint(repo, step),
                ["config.json", "pytorch_model.bin"])
               for repo in families.REPOS if "pythia" in repo for step in families.PYTHIA_STEPS},
            families.ATTN_ONLY: {"attn_only_2L_half.pth": families.attn_only_2l_half},
            families.NEOX_TOKENIZER: self._lazy_dict(families.neox_tokenizer, ["tokenizer.json",
                                                                               "tokenizer_config.json",
                                                                               "special_tokens_map.json"]),
        }

    @staticmethod
    def _family_names(repo: str) -> list[str]:
        shards = families.REPOS[repo][4]
        weights = (["model.safetensors"] if shards == 1 else
                   ["model.safetensors.index.json", *(f"model-{i:05d}-of-{shards:05d}.safetensors"
                                                      for i in range(1, shards + 1))])
        return ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", *weights, *(["added_tokens.json"] if repo in families.ADDED else [])]

    @staticmethod
    def _lazy_dict(make_all, names: list[str] | None = None) -> dict:
        """{name: maker} for files produced together (save_pretrained writes them in one go)."""
        names = names or ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                          "tokenizer_config.json"]
        made = {}

        def maker(name):
            def make():
                if not made:
                    made.update(make_all())
                return made[name]
            return make

        return {name: maker(name) for name in names}

    def files(self, repo: str) -> list[str]:
        return sorted([*self.makers.get(repo, {}), *self.listed_only.get(repo, [])])

    # ----- files written by the tests ----------------------------------------------------------------

    def add(self, repo: str, path: str, data) -> None:
        """A file of ``repo`` (a new repository or one of the above, whose other files stay), in place of any
        generated one. data: bytes, str, a dict of tensors (saved with torch.save) or another dict (JSON)."""
        if isinstance(data, dict) and data and isinstance(next(iter(data.values())), torch.Tensor):
            data = _torch_bytes(data)
        elif isinstance(data, dict):
            data = json.dumps(data).encode()
        elif isinstance(data, str):
            data = data.encode()
        self.makers.setdefault(repo, {})[path] = lambda: data
        if path in self.listed_only.get(repo, []):
            self.listed_only[repo].remove(path)

    def add_dir(self, repo: str, directory: Path) -> None:
        """``repo`` becomes a repository holding exactly the files of ``directory`` (what save_pretrained wrote)."""
        self.makers[repo], self.listed_only[repo] = {}, []
        for path in sorted(Path(directory).iterdir()):
            self.add(repo, path.name, path.read_bytes())

    def cache(self, repo: str, path: str) -> None:
        """``path`` of ``repo`` in the cache, as a download leaves it (``hf download repo path``)."""
        self._download_file(repo, path)

    @staticmethod
    def commit(repo: str) -> str:
        return hashlib.sha1(f"commit of {repo}".encode()).hexdigest()

    # ----- what huggingface_hub writes -------------------------------------------------------------

    def _storage(self, repo: str) -> Path:
        return self.cache_dir / ("models--" + repo.split("@")[0].replace("/", "--"))

    def _entry(self, path: str, data: bytes | None) -> dict:
        """The listing's entry for a file (the Hub's /tree fields); data None for a file never generated."""
        if data is None:
            data = f"never generated: {path}".encode()
        if not path.endswith(LFS_SUFFIXES):
            return {"size": len(data), "blob_id": _sha1_blob(data)}
        sha256 = hashlib.sha256(data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
        return {"size": len(data), "blob_id": _sha1_blob(pointer), "lfs_sha256": sha256, "lfs_size": len(data),
                "xet_hash": hashlib.sha256(b"xet" + data).hexdigest()}

    def _download_file(self, repo: str, path: str) -> bytes:
        """One file into blobs/ and snapshots/<commit>/, and refs/main (hf_hub_download's layout)."""
        from huggingface_hub._local_folder import CACHEDIR_TAG_CONTENT

        data = self.makers[repo][path]()
        etag = hashlib.sha256(data).hexdigest() if path.endswith(LFS_SUFFIXES) else _sha1_blob(data)
        storage, commit = self._storage(repo), self.commit(repo)
        blob = storage / "blobs" / etag
        pointer = storage / "snapshots" / commit / path
        for directory in (blob.parent, pointer.parent, storage / "refs"):
            directory.mkdir(parents=True, exist_ok=True)
        (self.cache_dir / "CACHEDIR.TAG").write_text(CACHEDIR_TAG_CONTENT)
        (storage / "refs" / (repo.split("@")[1] if "@" in repo else "main")).write_text(commit)
        lock = self.cache_dir / ".locks" / storage.name / f"{etag}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
        blob.write_bytes(data)
        if not pointer.exists():
            os.symlink(os.path.relpath(blob, pointer.parent), pointer)
        return data

    def hf_download(self, command: str) -> list[str]:
        """Run ``hf download <repo> [files...] [--include PATTERN ...]``; returns the paths downloaded."""
        args = shlex.split(command.split("  (")[0])  # the loader's messages add "  (why)" after a command
        if args[:2] != ["hf", "download"] or len(args) < 3:
            raise ValueError(f"not an `hf download` command: {command!r}")
        repo, rest = args[2], args[3:]
        if "--revision" in rest:  # another branch (Pythia's step<N>): its own repository key here
            i = rest.index("--revision")
            revision, rest = rest[i + 1], rest[:i] + rest[i + 2:]
            repo = repo if revision == "main" else f"{repo}@{revision}"
        if repo not in self.makers:
            raise ValueError(f"this fake Hub has no repository {repo}")
        filenames = [a for i, a in enumerate(rest) if a != "--include" and (i == 0 or rest[i - 1] != "--include")]
        patterns = [rest[i + 1] for i, a in enumerate(rest) if a == "--include"]
        listing = self.files(repo)
        for f in filenames:
            if f not in self.makers[repo]:
                raise ValueError(f"{repo} has no file {f} here (files: {sorted(self.makers[repo])})")
        wanted = filenames or [f for f in listing if any(fnmatch(f, p) for p in patterns)]
        if set(wanted) - set(self.makers[repo]):
            raise ValueError(f"this fake Hub generates only {sorted(self.makers[repo])} of {repo}")
        entries = {}
        for path in listing:
            entries[path] = self._entry(path, self._download_file(repo, path) if path in wanted else None)
        if len(wanted) > 1 or patterns:  # snapshot_download: records the listing of the whole repository
            tree = self._storage(repo) / "trees" / f"{self.commit(repo)}.json"
            tree.parent.mkdir(parents=True, exist_ok=True)
            tree.write_text(json.dumps({"format_version": 1, "files": entries}, indent=1))
        return wanted

    # ----- the Hub's side: downloads and listings, once serve() has put this FakeHub in the Hub's place -----

    def serve(self, monkeypatch) -> None:
        """Make this FakeHub the Hub: huggingface_hub's ``hf_hub_download`` (the downloads; cached files are read by
        the real function) and ``list_repo_files``, and helpers.hub's probe, which answers ``self.online``."""
        import huggingface_hub
        from huggingface_hub import constants

        from helpers import hub

        read_cache = huggingface_hub.hf_hub_download

        def hf_hub_download(repo_id, filename, *, subfolder=None, local_files_only=False, revision=None, **kwargs):
            path = f"{subfolder}/{filename}" if subfolder else filename
            if not local_files_only:
                self._serve(repo_id if revision in (None, "main") else f"{repo_id}@{revision}", path)
            return read_cache(repo_id, filename, subfolder=subfolder, local_files_only=True, revision=revision,
                              **kwargs)

        monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
        monkeypatch.setattr(huggingface_hub, "list_repo_files", self._list_repo_files)
        monkeypatch.setattr(hub, "hub_reachable", lambda *args, **kwargs: self.online)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def _serve(self, repo: str, path: str) -> None:
        """One download: the file written into the cache, and its name in ``served``. A repository this Hub does not
        have, or a gated one, raises what huggingface_hub raises for the Hub's answer (404, 403)."""
        import httpx
        from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

        assert self.online, f"download of {repo}/{path} attempted while offline"
        for refused, status, error in ((repo not in self.makers, 404, RepositoryNotFoundError),
                                       (repo in self.gated, 403, GatedRepoError)):
            if refused:
                url = f"https://huggingface.co/{repo}/resolve/main/{path}"
                raise error(f"{status} for {url}", response=httpx.Response(status, request=httpx.Request("HEAD", url)))
        if path not in self.makers.get(repo, {}):
            if path in self.listed_only.get(repo, []):
                raise ValueError(f"this fake Hub generates only {sorted(self.makers[repo])} of {repo}")
            raise EntryNotFoundError(f"{repo} has no {path}")
        self._download_file(repo, path)
        self.served.append(f"{repo}/{path}")

    def _list_repo_files(self, repo_id: str, **kwargs) -> list[str]:
        assert self.online, f"listing of {repo_id} attempted while offline"
        return self.files(repo_id)
