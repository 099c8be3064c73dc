"""The real-model path, offline: a Hugging Face cache laid out exactly as ``hf download`` leaves it
(tests/fake_hub.py, random weights), read by the real huggingface_hub. The README's pre-download commands are
the ones tested here, and every notebook runs on them with COURSE_EMBEDDED_MODELS unset.
"""

import pytest
import torch

from helpers import HookedTransformer, loading, sae
from tests.fake_hub import GPT2_SAES, OTHELLO, SOLU, TOY_LABELS
from tests.real_path import run as real_path

pytestmark = pytest.mark.slow  # not in `make test-fast`


def test_the_fake_cache_is_what_huggingface_hub_reads(offline_cache):
    """huggingface_hub itself finds the files, the recorded listing, and calls the partial snapshot incomplete
    (the IncompleteSnapshotError that made the loader reject such caches)."""
    import huggingface_hub
    from huggingface_hub.errors import IncompleteSnapshotError

    offline_cache.hf_download("hf download gpt2 config.json model.safetensors")
    path = huggingface_hub.hf_hub_download("gpt2", "config.json", local_files_only=True)
    assert '"n_layer": 2' in open(path).read()
    listed = [f.path for f in huggingface_hub.get_cached_repo_tree("gpt2")]
    assert {"config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"} <= set(listed)
    with pytest.raises(IncompleteSnapshotError):
        huggingface_hub.snapshot_download("gpt2", local_files_only=True)
    info = huggingface_hub.scan_cache_dir()
    (repo,) = info.repos
    assert repo.repo_id == "gpt2" and {f.file_name for f in next(iter(repo.revisions)).files} == {
        "config.json", "model.safetensors"}


def test_a_partial_gpt2_download_is_accepted(offline_cache):
    offline_cache.hf_download("hf download gpt2 config.json model.safetensors")
    assert loading.is_available("gpt2-small")
    assert loading.choose_model("gpt2-small") == "gpt2-small"
    model = HookedTransformer.from_pretrained("gpt2-small")
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.model_name) == (2, 64, "gpt2")
    assert model.to_str_tokens("Hello world") == ["<|endoftext|>", "Hello", " world"]


def test_the_loaders_own_commands_are_accepted(offline_cache):
    """What the offline message says to run, for a toy model (final file and its tokenizer) and Othello-GPT."""
    offline_cache.hf_download("hf download gpt2 config.json model.safetensors")  # any warm repo
    for name in ("solu-2l", "othello-gpt"):
        with pytest.raises(loading.HubUnavailableError) as error:
            HookedTransformer.from_pretrained(name)
        commands = [line.strip() for line in str(error.value).splitlines() if line.strip().startswith("hf download")]
        for command in commands:
            if "checkpoints/*" not in command:  # all 163 checkpoints: not needed to load the model
                offline_cache.hf_download(command)
    solu = HookedTransformer.from_pretrained("solu-2l")
    assert solu.cfg.d_vocab == 48262 and solu.tokenizer.bos_token_id == 0
    assert solu.to_str_tokens("x 2024")[2:] == [" ", "2", "0", "2", "4"]  # digits one by one
    othello = HookedTransformer.from_pretrained("othello-gpt")
    # The sizes come from the weights file: the small fake is 2 layers of width 64, the registry says 8L512W.
    assert (othello.cfg.n_layers, othello.cfg.d_model, othello.cfg.d_mlp) == (2, 64, 256)
    assert othello.cfg.normalization_type == "LNPre" and othello.cfg.n_ctx == 59


def test_some_checkpoints_with_the_recorded_listing(offline_cache):
    """A multi-file download records the repository's listing: the labels and indices are the Hub's, and only
    the downloaded checkpoints load (the others get the offline message naming their file)."""
    stem = SOLU.split("/")[1]
    offline_cache.hf_download(f"hf download {SOLU} checkpoints/{stem}_{TOY_LABELS[0]}.pth "
                              f"checkpoints/{stem}_{TOY_LABELS[10]}.pth")
    offline_cache.hf_download(f"hf download {loading.NEEL_TOKENIZER} tokenizer.json")
    assert loading.get_checkpoint_labels("solu-2l") == (TOY_LABELS, "token")
    model = HookedTransformer.from_pretrained("solu-2l", checkpoint_index=10)
    assert model.cfg.checkpoint_value == TOY_LABELS[10]
    reference = torch.load(offline_cache.cache_dir / f"models--NeelNanda--{stem}" / "snapshots" /
                           offline_cache.commit(SOLU) / f"checkpoints/{stem}_{TOY_LABELS[10]}.pth", weights_only=True)
    raw = HookedTransformer.from_pretrained_no_processing("solu-2l", checkpoint_value=TOY_LABELS[10])
    assert torch.equal(raw.W_E, reference["embed.W_E"])
    with pytest.raises(loading.HubUnavailableError, match=f"{stem}_{TOY_LABELS[11]}.pth"):
        HookedTransformer.from_pretrained("solu-2l", checkpoint_index=11)


def test_readme_commands_cover_every_notebook_model(offline_cache):
    commands = real_path.readme_commands()
    assert len(commands) >= 4
    for command in commands:
        offline_cache.hf_download(command)
    for name in ("gpt2-small", "distilgpt2", "solu-2l", "attn-only-2l", "othello-gpt", "Qwen/Qwen2.5-0.5B"):
        assert loading.choose_model(name) == name
    labels, _ = loading.get_checkpoint_labels("solu-2l")
    for index in (0, 10, 25, 35, 60, len(labels) - 1):  # the checkpoints notebook 04 measures
        model = HookedTransformer.from_pretrained("solu-2l", checkpoint_index=index)
        assert model.cfg.checkpoint_value == TOY_LABELS[index]
    assert loading.MODELS["othello-gpt"].repo == OTHELLO
    assert sae.load_pretrained_sae(GPT2_SAES, "blocks.8.hook_resid_pre").cfg.d_in == 64  # notebook 10's SAE


@pytest.fixture(scope="module")
def readme_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("real-path") / "hub"
    real_path.build_cache(cache, "small")
    return cache


@pytest.mark.parametrize("notebook", real_path.NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_real_path(notebook, readme_cache, tmp_path):
    result = real_path.execute(notebook, readme_cache, tmp_path / notebook.name)
    assert result["error"] is None, result["error"]
    assert real_path.REAL_MODEL in real_path.setup_output(tmp_path / notebook.name)
    print(f"{notebook.stem}: {result['seconds']:.0f} s, kernel peak {result['peak_mb']:.0f} MB")


# ------------------------------------------------------------------------------------------------
# The families beyond GPT-2: their repositories in their real layout (tests/fake_hub_families.py)
# ------------------------------------------------------------------------------------------------

FAMILY_MODELS = ["Qwen/Qwen2.5-0.5B", "Qwen/Qwen3-0.6B", "EleutherAI/pythia-70m", "EleutherAI/pythia-160m",
                 "meta-llama/Llama-3.2-1B", "mistralai/Mistral-7B-v0.1", "google/gemma-2-2b", "google/gemma-3-270m",
                 "google/gemma-3-1b-pt", "google/gemma-3-4b-pt", "allenai/OLMo-2-0425-1B"]


def _commands(name: str, **kwargs) -> list[str]:
    """The `hf download` commands of the loader's offline message for ``name``."""
    with pytest.raises(loading.HubUnavailableError) as error:
        HookedTransformer.from_pretrained(name, **kwargs)
    return [line.strip() for line in str(error.value).splitlines() if line.strip().startswith("hf download")]


def _snapshot(cache_dir, repo: str, fake) -> object:
    """The snapshot directory of ``repo`` (``"<repo>@<revision>"`` for a revision other than main)."""
    return cache_dir / f"models--{repo.split('@')[0].replace('/', '--')}" / "snapshots" / fake.commit(repo)


def test_qwen25_has_its_published_sizes_at_the_real_scale():
    """`make test-real` times notebook 09 on Qwen2.5-0.5B's published shapes: 24 layers, d_model 896, 494,032,768
    parameters with the embeddings tied (0.36 billion without them, as its model card says); small otherwise."""
    import transformers

    from tests.fake_hub_families import hf_config

    config = hf_config("Qwen/Qwen2.5-0.5B", "real")
    with torch.device("meta"):
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**config))
    total = sum(p.numel() for p in model.parameters())
    assert total == 494_032_768 and round((total - 151_936 * 896) / 1e9, 2) == 0.36
    assert hf_config("Qwen/Qwen2.5-0.5B")["num_hidden_layers"] == 2


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_family_repository_loads_offline_as_transformers_reads_it(offline_cache, name):
    """The offline message's commands fill the cache; the model then loads by its short alias, equal to transformers'
    reading of the same files (bfloat16 weights, transformers 4.x config fields, shards), with its tokenizer."""
    from transformers import AutoModelForCausalLM

    from tests.fake_hub_families import ADDS_BOS, GEMMA3

    commands = _commands(name)
    assert commands == [f'hf download {name} --include "*.json" --include "model*.safetensors"']
    for command in commands:
        offline_cache.hf_download(command)
    alias = loading.MODELS[name].aliases[0]
    model = HookedTransformer.from_pretrained_no_processing(alias)
    assert model.cfg.model_name == name and model.cfg.n_layers == (6 if name in GEMMA3 else 2)
    hf = AutoModelForCausalLM.from_pretrained(_snapshot(offline_cache.cache_dir, name, offline_cache),
                                              dtype=torch.float32).eval()
    tokens = model.to_tokens(["The cat sat on the mat.", "Hello there"])
    bos = model.tokenizer.bos_token_id  # one BOS when the family's tokenizer has one (not two), none otherwise
    if name in ADDS_BOS:
        assert bool((tokens[:, 0] == bos).all()) and bool((tokens[:, 1] != bos).all())
    else:  # Qwen's tokenizer has no BOS; Pythia's and OLMo 2's <|endoftext|> ends documents
        assert not model.cfg.default_prepend_bos and (bos is None or not bool((tokens[:, 0] == bos).any()))
    if bos is None:  # notebook 09: "helpers refuse avec une erreur plutôt que d'inventer un token"
        with pytest.raises(ValueError, match="has no BOS token"):
            model.to_tokens("The cat", prepend_bos=True)
    with torch.no_grad():
        expected = hf(tokens[:1]).logits
        assert (model(tokens[:1]) - expected).abs().max() < 1e-4
        processed = HookedTransformer.from_pretrained(name)
        assert (processed(tokens[:1]).log_softmax(-1) - expected.log_softmax(-1)).abs().max() < 1e-4
    text = processed.generate("The cat", max_new_tokens=3, do_sample=False, stop_at_eos=False, verbose=False)
    assert text.startswith("The cat")


def test_pythia_checkpoints_are_revisions(offline_cache):
    labels, label_type = loading.get_checkpoint_labels("pythia-160m")
    assert label_type == "step" and len(labels) == 154 and labels[:3] == [0, 1, 2] and labels[-1] == 143000
    commands = _commands("pythia-160m", checkpoint_value=1000)
    assert "hf download EleutherAI/pythia-160m config.json pytorch_model.bin --revision step1000" in commands
    for command in commands:
        offline_cache.hf_download(command)
    model = HookedTransformer.from_pretrained("pythia-160m", checkpoint_value=1000)
    assert (model.cfg.checkpoint_value, model.cfg.checkpoint_index) == (1000, labels.index(1000))
    by_index = HookedTransformer.from_pretrained_no_processing("pythia-160m", checkpoint_index=labels.index(1000))
    reference = torch.load(_snapshot(offline_cache.cache_dir, "EleutherAI/pythia-160m@step1000", offline_cache)
                           / "pytorch_model.bin", weights_only=True)
    assert torch.equal(by_index.W_E, reference["gpt_neox.embed_in.weight"].float())
    with pytest.raises(loading.HubUnavailableError, match="--revision step2000"):
        HookedTransformer.from_pretrained("pythia-160m", checkpoint_value=2000)


def test_the_loader_downloads_shards_and_revisions_itself(offline_cache, monkeypatch):
    """Online (the fake Hub serving), the loader fetches a sharded checkpoint's index and shards, and a revision."""
    offline_cache.serve(monkeypatch)
    HookedTransformer.from_pretrained("gemma-2-2b")
    served = [f for f in offline_cache.served if f.startswith("google/gemma-2-2b/")]
    assert {"google/gemma-2-2b/model.safetensors.index.json",
            *(f"google/gemma-2-2b/model-0000{i}-of-00003.safetensors" for i in (1, 2, 3))} <= set(served)
    HookedTransformer.from_pretrained("pythia-70m", checkpoint_index=3)
    assert "EleutherAI/pythia-70m@step4/pytorch_model.bin" in offline_cache.served


def test_arena_attn_only_2l_half(offline_cache):
    for command in _commands("callummcdougall/attn_only_2L_half"):
        offline_cache.hf_download(command)
    model = HookedTransformer.from_pretrained("attn_only_2L_half")
    cfg = model.cfg
    assert (cfg.n_heads, cfg.n_layers, cfg.attn_only, cfg.positional_embedding_type) == (12, 2, True, "shortformer")
    assert cfg.normalization_type is None and model.tokenizer.bos_token == "<|endoftext|>"
    _, cache = model.run_with_cache("The cat sat")
    assert cache["blocks.1.attn.hook_pattern"].shape[1] == 12
