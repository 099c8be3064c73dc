"""Evaluations of a model, all offline: the classic ``transformer_lens.evals`` names.

``induction_loss``, the rough induction test of the TransformerLens demo (the loss on the second half of random
tokens repeated twice: a model with induction heads predicts it well); ``ioi_eval``, the Indirect Object
Identification task on the course's generated IOI prompts (the held-out test templates) or on an ``IOIDataset``
(the classic dataset class, its defaults drawn from the same held-out names, templates, places and objects);
``sanity_check``, the loss on one paragraph of English; and ``repeated_random_tokens``, the batch notebook 04
studies induction on.

The metrics of the shipped course models (written to data/models/*/metrics.json) are in training/metrics.py.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from helpers import checks, utils
from helpers.ioi import EVAL_OBJECTS, EVAL_PLACES, EVAL_TEMPLATES, NAMES, IOIPrompt, ioi_eval_prompts
from helpers.model import HookedTransformer

RANDOM_LOW, RANDOM_HIGH = 1000, 10000  # random tokens are drawn from ids 1000..9999 (training uses them too)
SANITY_TEXT = ("Many important transition points in the history of science have been moments when science "
               "'zoomed in.' At these points, we develop a visualization or tool that allows us to see the world in "
               "a new level of detail, and a new field of science develops to study the world through this lens.")


@torch.no_grad()
def sanity_check(model: HookedTransformer) -> torch.Tensor:
    """The model's loss on a paragraph of English: below 5 the model is probably fine, above 7 something is wrong
    (for models trained on English web text; the course models see generated stories)."""
    return model(SANITY_TEXT, return_type="loss")


@torch.no_grad()
def induction_loss(model: HookedTransformer, tokenizer=None, batch_size: int = 4, subseq_len: int = 384,
                   prepend_bos: bool | None = None, device=None) -> torch.Tensor:
    """Mean loss on the second half (from its third token, as TransformerLens) of ``batch_size`` sequences of
    ``subseq_len`` random tokens repeated twice; the first token is BOS unless ``prepend_bos`` is False (default:
    the model's ``cfg.default_prepend_bos``).
    The random tokens come from torch's global generator (seed it for a fixed batch). A model without induction
    heads scores about ln(9000) = 9.1 or more; copying scores near 0. The classic function draws ids 100 to
    19999; here they are 1000 to 9999, the ids the course models saw repeated in training (outside the ids of
    their corpus, the course models' logits carry a -100 bias).

    subseq_len is cut to n_ctx // 2 when 2 * subseq_len does not fit the model's context (with a warning).
    """
    n_ctx = model.cfg.n_ctx
    if 2 * subseq_len > n_ctx:
        checks.warn(f"induction_loss: subseq_len={subseq_len} repeated twice does not fit this model's context "
                    f"(n_ctx={n_ctx}); using subseq_len={n_ctx // 2}.")
        subseq_len = n_ctx // 2
    device = model.cfg.device if device is None else device
    first_half = torch.randint(RANDOM_LOW, RANDOM_HIGH, (batch_size, subseq_len))
    tokens = first_half.repeat(1, 2).to(device)
    if utils.override_or_use_default_value(model.cfg.default_prepend_bos, prepend_bos):
        tokens[:, 0] = (tokenizer or model.tokenizer).bos_token_id
    loss = utils.lm_cross_entropy_loss(model(tokens), tokens, per_token=True)  # [batch 2*subseq_len-1]
    # The predictions of the second half's tokens 3..: its first token repeats nothing yet, and with a BOS its second
    # follows a token the first half never showed (the BOS took its place). TransformerLens 3.5.1 slices the same.
    return loss[:, subseq_len + 1:].mean()


class IOIDataset(torch.utils.data.Dataset):
    """IOI samples in the classic format: ``samples``, a list of ``{"text", "IO", "S"}`` strings, the text ending
    with the answer (the indirect object, `` IO``; `` S`` is the repeated subject); item i is ``{"prompt", "IO",
    "S"}`` as token ids (``prompt`` with BOS first if ``prepend_bos``).

    A template writes ``[A]`` for the indirect object, ``[B]`` for the subject and ``[NOUN]`` for each key of
    ``nouns`` (one draw per sample, the same at every place). Each sample draws a template, two different names
    and the nouns; ``symmetric`` adds the sample with the two names swapped. ``seed`` makes the samples
    reproducible (they come from a generator of their own: the global ``random`` state is left alone). The
    defaults are the course's held-out IOI set (helpers.ioi: its evaluation templates in both name orders, its
    names, places and objects), where the classic class has two templates and the names John and Mary.
    """

    def __init__(self, tokenizer, templates: list[str] | None = None, names: list[str] | None = None,
                 nouns: dict[str, list[str]] | None = None, num_samples: int = 1000, symmetric: bool = False,
                 prepend_bos: bool = True, seed: int | None = None):
        self.tokenizer = tokenizer
        self.prepend_bos = prepend_bos
        self.templates = self.get_default_templates() if templates is None else templates
        self.names = self.get_default_names() if names is None else names
        self.nouns = self.get_default_nouns() if nouns is None else nouns
        if len(set(self.names)) < 2:
            raise ValueError(f"IOIDataset needs at least two different names, got {self.names}.")
        self._rng = random.Random(seed)
        self.samples = []
        for _ in range(num_samples // 2 if symmetric else num_samples):
            self.samples.extend(self.get_sample(symmetric=symmetric))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        sample = self.samples[idx]
        prompt = self.tokenizer.encode(sample["text"])
        if self.prepend_bos:
            prompt = [self.tokenizer.bos_token_id, *prompt]
        return {"prompt": torch.LongTensor(prompt), "IO": torch.LongTensor(self.tokenizer.encode(sample["IO"])),
                "S": torch.LongTensor(self.tokenizer.encode(sample["S"]))}

    def get_sample(self, symmetric: bool = False) -> list[dict[str, str]]:
        """One sample (two with ``symmetric``: the same text with the names swapped)."""
        template = self._rng.choice(self.templates)
        for noun, choices in self.nouns.items():
            template = template.replace(f"[{noun}]", self._rng.choice(choices))
        io, subject = self._rng.sample(self.names, 2)
        pairs = [(io, subject), (subject, io)] if symmetric else [(io, subject)]
        return [{"text": template.replace("[A]", a).replace("[B]", b), "IO": " " + a, "S": " " + b}
                for a, b in pairs]

    @staticmethod
    def get_default_names() -> list[str]:
        return list(NAMES)

    @staticmethod
    def get_default_templates() -> list[str]:
        """helpers.ioi's held-out templates, the answer written at the end, with the indirect object introduced
        first (ABB) and second (BAB)."""
        orders = ({"A": "[A]", "B": "[B]"}, {"A": "[B]", "B": "[A]"})
        return [t.format(**names, S="[B]", P="[LOCATION]", O="[OBJECT]") + " [A]"
                for t in EVAL_TEMPLATES for names in orders]

    @staticmethod
    def get_default_nouns() -> dict[str, list[str]]:
        return {"LOCATION": list(EVAL_PLACES), "OBJECT": list(EVAL_OBJECTS)}


def _ioi_cases(model: HookedTransformer, prompts) -> list[tuple[torch.Tensor, int, int]]:
    """(tokens before the answer [pos], correct id, incorrect id) of each prompt: an IOIPrompt, or an item in the
    classic format ({"prompt", "IO", "S"} token ids, the prompt ending with the IO name): there the answer is
    the first token where the IO and S names differ."""
    cases = []
    for p in prompts:
        if isinstance(p, IOIPrompt):
            cases.append((model.to_tokens(p.prompt)[0], model.to_single_token(p.io),
                          model.to_single_token(p.subject)))
            continue
        io, subject = p["IO"], p["S"]
        n = min(len(io), len(subject))
        differ = (io[:n] != subject[:n]).nonzero()
        if len(differ) == 0:
            raise ValueError(f"An IOI sample's two names tokenize alike ({io.tolist()} and {subject.tolist()}): "
                             "no token tells them apart.")
        first = int(differ[0])
        cases.append((p["prompt"][: len(p["prompt"]) - len(io) + first].to(model.cfg.device), int(io[first]),
                      int(subject[first])))
    return cases


@torch.no_grad()
def ioi_logit_diffs(model: HookedTransformer, prompts, batch_size: int | None = None) -> np.ndarray:
    """Logit of the indirect object minus that of the subject after each prompt (IOIPrompts, an IOIDataset or
    items in its format): [n_prompts].

    Prompts of the same number of tokens run together (no padding), at most ``batch_size`` at a time."""
    cases = _ioi_cases(model, prompts)
    answers = torch.tensor([[io, subject] for _, io, subject in cases], device=model.cfg.device)  # [n, 2]
    diffs = torch.empty(len(cases))
    for length in sorted({len(tokens) for tokens, _, _ in cases}):
        same = [i for i, (tokens, _, _) in enumerate(cases) if len(tokens) == length]
        for start in range(0, len(same), batch_size or len(same)):
            idx = same[start:start + (batch_size or len(same))]
            logits = model(torch.stack([cases[i][0] for i in idx]))[:, -1]  # [batch, d_vocab]
            pair = logits.gather(-1, answers[idx])  # [batch, 2]
            diffs[idx] = (pair[:, 0] - pair[:, 1]).float().cpu()
    return diffs.numpy()


@torch.no_grad()
def ioi_eval(model: HookedTransformer, dataset: Sequence[IOIPrompt] | IOIDataset | None = None,
             batch_size: int = 8, num_samples: int = 1000) -> dict[str, float]:
    """Mean logit difference (indirect object minus subject, at the position before the answer) and accuracy
    (share of prompts where it is positive) on IOI prompts: ``dataset`` (a list of ``IOIPrompt``, or an
    ``IOIDataset`` or other dataset of its items) or ``num_samples`` of the course's held-out test prompts
    (``ioi.ioi_eval_prompts``). Prompts of the same length run in batches of at most ``batch_size``."""
    prompts = list(ioi_eval_prompts(num_samples, seed=1)) if dataset is None else list(dataset)
    if not prompts:
        raise ValueError("ioi_eval: the dataset is empty; pass IOIPrompt objects (ioi.ioi_eval_prompts) or an "
                         "IOIDataset.")
    diffs = torch.from_numpy(ioi_logit_diffs(model, prompts, batch_size))
    return {"Logit Difference": diffs.double().mean().item(), "Accuracy": (diffs > 0).double().mean().item()}


def repeated_random_tokens(model: HookedTransformer, seq_len: int = 50, batch: int = 20,
                           seed: int = 0, prepend_bos: bool | None = None) -> torch.Tensor:
    """BOS + seq_len random tokens (ids 1000..9999) + the same tokens again: [batch 1+2*seq_len]; without the BOS
    when ``prepend_bos`` is False (default: the model's ``cfg.default_prepend_bos``; Qwen's is False), [batch
    2*seq_len]."""
    generator = torch.Generator().manual_seed(seed)
    random = torch.randint(RANDOM_LOW, RANDOM_HIGH, (batch, seq_len), generator=generator)
    bos = utils.override_or_use_default_value(model.cfg.default_prepend_bos, prepend_bos)
    first = [torch.full((batch, 1), model.tokenizer.bos_token_id)] if bos else []
    return torch.cat([*first, random, random], dim=1).to(model.cfg.device)
