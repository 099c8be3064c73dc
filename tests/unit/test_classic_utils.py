"""The classic helpers of ``transformer_lens.utils`` that helpers.utils re-implements: Slice, the tensor checks,
the initialisations with the classic fan conventions, get_corner, remove_batch_dim and tokenize_and_concatenate.
(Each was compared with TransformerLens 3.5.1 outside the repository; these tests state the behaviour.)"""

import importlib.util
import math

import numpy as np
import pytest
import torch

from helpers import utils
from helpers.tokenizer import gpt2_tokenizer

GRID = torch.arange(24).reshape(2, 3, 4)


# ----- Slice --------------------------------------------------------------------------------------


@pytest.mark.parametrize("selection, expected", [
    (None, GRID),
    (1, GRID[:, 1]),  # an int drops the dimension
    (-1, GRID[:, 2]),
    ((2,), GRID[:, :2]),  # a tuple is a slice: (stop,), (start, stop), (start, stop, step)
    ((1, 3), GRID[:, 1:3]),
    ((0, 3, 2), GRID[:, ::2]),
    (slice(1, None), GRID[:, 1:]),
    ([2, 0], GRID[:, [2, 0]]),  # indices keep the dimension
    (torch.tensor([1]), GRID[:, 1:2]),
    (np.array([0, 2]), GRID[:, [0, 2]]),
    (torch.tensor(2), GRID[:, 2]),  # a 0-dim tensor is one index
])
def test_slice_applies_along_a_dimension(selection, expected):
    got = utils.Slice(selection).apply(GRID, dim=1)
    assert got.shape == expected.shape and torch.equal(got, expected)
    assert torch.equal(utils.Slice(selection).apply(GRID, dim=-2), got)  # dims count from the end too


def test_slice_indices_and_unwrap():
    assert utils.Slice(3).indices().tolist() == [3]
    assert utils.Slice((1, 5, 2)).indices(10).tolist() == [1, 3]
    assert utils.Slice(None).indices(3).tolist() == [0, 1, 2]
    assert utils.Slice([4, -1]).indices(6).tolist() == [4, 5]
    with pytest.raises(ValueError, match="max_ctx"):
        utils.Slice([0, 2]).indices()
    kept = utils.Slice.unwrap(1).apply(GRID, dim=0)  # unwrap keeps the dimension of an int
    assert kept.shape == (1, 3, 4)
    already = utils.Slice((0, 1))
    assert utils.Slice.unwrap(already) is already
    assert repr(utils.Slice(2)) == "Slice: 2 Mode: int "


@pytest.mark.parametrize("bad", [1.5, "pos", [0.5, 1.0], (1, 2, 3, 4)])
def test_slice_refuses_what_is_not_a_selection(bad):
    with pytest.raises(ValueError, match="Slice"):
        utils.Slice(bad)


def test_a_tuple_pos_slice_is_a_range_in_the_cache():
    from helpers import HookedTransformer, HookedTransformerConfig

    model = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=6, n_heads=2, d_vocab=10,
                                                      act_fn="relu", seed=0))
    _, cache = model.run_with_cache(torch.tensor([[1, 2, 3, 4, 5]]))
    whole = cache.decompose_resid()
    assert torch.equal(cache.decompose_resid(pos_slice=(1, 4)), whole[:, :, 1:4])
    assert torch.equal(cache.decompose_resid(pos_slice=utils.Slice([0, 4])), whole[:, :, [0, 4]])
    neurons = cache.stack_neuron_results(neuron_slice=(0, 5))
    assert neurons.shape[0] == 5


# ----- small tensor helpers -------------------------------------------------------------------------


def test_square_and_lower_triangular():
    assert utils.is_square(torch.ones(3, 3)) and utils.is_square(torch.zeros(1, 1))
    for not_square in (torch.ones(2, 3), torch.ones(3), torch.tensor(1.0), torch.ones(2, 2, 2)):
        assert not utils.is_square(not_square) and not utils.is_lower_triangular(not_square)
    assert utils.is_lower_triangular(torch.randn(4, 4).tril())
    assert utils.is_lower_triangular(torch.zeros(4, 4))
    assert not utils.is_lower_triangular(torch.ones(4, 4).triu())
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    assert utils.is_lower_triangular(causal)


def test_get_corner_and_remove_batch_dim():
    x = torch.randn(1, 5, 6)
    assert torch.equal(utils.get_corner(x), x[:1, :3, :3])
    assert utils.get_corner(x, 2).shape == (1, 2, 2)
    assert utils.remove_batch_dim(x).shape == (5, 6)
    assert utils.remove_batch_dim(torch.zeros(2, 5)).shape == (2, 5)  # a real batch stays


# ----- initialisations --------------------------------------------------------------------------


def test_fans_follow_the_classic_layouts():
    assert utils.calc_fan_in_and_fan_out(torch.empty(7)) == (1, 7)
    assert utils.calc_fan_in_and_fan_out(torch.empty(16, 64)) == (16, 64)  # W_in [d_in d_out]
    assert utils.calc_fan_in_and_fan_out(torch.empty(4, 32, 8)) == (32, 32)  # W_Q [head d_model d_head]
    for shape in [(), (2, 2, 2, 2)]:
        with pytest.raises(ValueError, match="Fan in"):
            utils.calc_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("init, expected_std", [
    (lambda p: utils.init_xavier_uniform_(p), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    (lambda p: utils.init_xavier_normal_(p, gain=3.0), lambda fi, fo: 3 * math.sqrt(2 / (fi + fo))),
    (lambda p: utils.init_kaiming_uniform_(p), lambda fi, fo: math.sqrt(2 / fi)),  # relu's gain sqrt(2)
    (lambda p: utils.init_kaiming_normal_(p, nonlinearity="linear"), lambda fi, fo: 1 / math.sqrt(fi)),
    (lambda p: utils.init_kaiming_normal_(p, nonlinearity="linear", mode="fan_out"), lambda fi, fo: 1 / math.sqrt(fo)),
])
def test_initialisations_reach_their_standard_deviation(init, expected_std):
    torch.manual_seed(0)
    for shape in [(2, 2000, 64), (1500, 300), (200_000,)]:
        param = torch.nn.Parameter(torch.empty(shape))
        assert init(param) is param  # in place, and returned
        fan_in, fan_out = utils.calc_fan_in_and_fan_out(param)
        assert param.std().item() == pytest.approx(expected_std(fan_in, fan_out), rel=0.02)


def test_uniform_initialisations_stay_within_sqrt_3_std():
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.empty(600, 500))
    utils.init_kaiming_uniform_(param, nonlinearity="linear")
    bound = math.sqrt(3) / math.sqrt(600)
    assert param.abs().max().item() <= bound and param.abs().max().item() > 0.99 * bound
    with pytest.raises(ValueError, match="fan_in"):
        utils.init_kaiming_normal_(param, mode="fan_middle")


# ----- tokenize_and_concatenate -----------------------------------------------------------------------


class TinyDataset:
    """The part of a datasets.Dataset that tokenize_and_concatenate uses (datasets is not a course dependency)."""

    def __init__(self, columns: dict[str, list]):
        self.columns = columns

    @property
    def column_names(self):
        return list(self.columns)

    def map(self, fn, batched, remove_columns, num_proc=None, batch_size=1000):
        assert batched
        n = len(next(iter(self.columns.values())))
        out = []
        for start in range(0, n, batch_size):
            out.extend(fn({k: v[start:start + batch_size] for k, v in self.columns.items()})["tokens"])
        kept = {k: v for k, v in self.columns.items() if k not in remove_columns}
        return TinyDataset({**kept, "tokens": out})

    def set_format(self, type, columns):
        self.columns = {k: torch.tensor(np.array(v)) for k, v in self.columns.items() if k in columns}

    def __getitem__(self, key):
        return self.columns[key]


def test_tokenize_and_concatenate_joins_documents_and_cuts_rows():
    tok = gpt2_tokenizer()
    texts = ["The cat sat on the mat.", "Hello world", "A longer document with a few more words in it."]
    out = utils.tokenize_and_concatenate(TinyDataset({"text": texts, "id": [0, 1, 2]}), tok, max_length=6)
    assert out.column_names == ["tokens"]
    rows = out["tokens"]
    assert rows.shape[1] == 6 and (rows[:, 0] == tok.bos_token_id).all()
    joined = []
    for text in texts:
        joined += [tok.eos_token_id, *tok(text)["input_ids"]]
    joined = joined[1:]
    n_rows = len(joined) // 5
    assert rows.shape[0] == n_rows
    assert rows[:, 1:].flatten().tolist() == joined[: 5 * n_rows]  # the tail shorter than a row is dropped


def test_tokenize_and_concatenate_pads_a_short_batch_and_leaves_the_tokenizer_alone():
    tok = gpt2_tokenizer()
    out = utils.tokenize_and_concatenate(TinyDataset({"text": ["Hi"]}), tok, max_length=5, add_bos_token=False,
                                         streaming=True)
    ids = tok("Hi")["input_ids"]
    assert out["tokens"].tolist() == [ids + [tok.pad_token_id] * (5 - len(ids))]
    assert "sequence-length-is-longer-than-the-specified-maximum" not in tok.deprecation_warnings


def test_tokenize_and_concatenate_without_a_dataset():
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(ImportError, match="pip install datasets"):
            utils.tokenize_and_concatenate(["some text"], gpt2_tokenizer())
    else:
        with pytest.raises(TypeError, match="Dataset.from_dict"):
            utils.tokenize_and_concatenate(["some text"], gpt2_tokenizer())
