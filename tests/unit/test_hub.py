"""helpers.hub, the Hub and file layer under loading: one file fetched by hand, as TransformerLens'
``utils.download_file_from_hf`` does, on a real on-disk Hugging Face cache (tests/fake_hub.py), offline."""

import ast
from pathlib import Path

import pytest
import torch

from helpers import hub, loading, utils
from tests.fake_hub import OTHELLO


def test_the_classic_location_and_the_old_one_are_the_same_function():
    assert utils.download_file_from_hf is hub.download_file_from_hf is loading.download_file_from_hf
    assert loading.HubUnavailableError is hub.HubUnavailableError
    assert loading.DamagedFileError is hub.DamagedFileError


def test_the_hub_layer_sits_below_every_other_helpers_module():
    # utils (low in the graph) re-exports download_file_from_hf: hub must not import utils, config or loading.
    tree = ast.parse(Path(hub.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.split(".")[0] == "helpers"}


def test_a_cached_weights_file_comes_back_as_a_state_dict(offline_cache):
    offline_cache.hf_download(f"hf download {OTHELLO} synthetic_model.pth")
    snapshot = offline_cache.cache_dir / f"models--{OTHELLO.replace('/', '--')}" / "snapshots"
    expected = torch.load(snapshot / offline_cache.commit(OTHELLO) / "synthetic_model.pth", weights_only=True)
    state_dict = utils.download_file_from_hf(OTHELLO, "synthetic_model.pth")
    assert state_dict.keys() == expected.keys()
    assert all(torch.equal(state_dict[k], expected[k]) for k in expected)


def test_a_file_missing_offline_names_the_command_that_fetches_it(offline_cache):
    with pytest.raises(hub.HubUnavailableError) as error:
        utils.download_file_from_hf(OTHELLO, "synthetic_model.pth")
    text = str(error.value)
    assert "HF_HUB_OFFLINE=1 is set" in text
    assert f"hf download {OTHELLO} synthetic_model.pth" in text
    assert "stands in" not in text  # a file outside the registry has no course model to stand in


def test_a_damaged_cached_file_is_named(offline_cache):
    offline_cache.hf_download(f"hf download {OTHELLO} synthetic_model.pth")
    blob = next((offline_cache.cache_dir / f"models--{OTHELLO.replace('/', '--')}" / "blobs").iterdir())
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(hub.DamagedFileError, match="synthetic_model.pth.*--force-download"):
        utils.download_file_from_hf(OTHELLO, "synthetic_model.pth")
