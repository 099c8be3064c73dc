"""Tests of training/corpus.py and helpers.ioi: names, train/eval disjointness, eval records, determinism, corpus."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest

from helpers import ioi
from helpers.tokenizer import END_OF_TEXT_ID, gpt2_tokenizer
from training import corpus as C
from training.train import SPECS

N_TRAIN_DOCS = 3000


@lru_cache(maxsize=1)
def training_text() -> list[str]:
    return C.ioi_training_sentences(N_TRAIN_DOCS, seed=0) + C.narrative_documents(1000, seed=0) + zipf_text()


@lru_cache(maxsize=1)
def zipf_text() -> list[str]:
    return C.zipf_documents(N_TRAIN_DOCS, seed=0, kind="narrative_zipf") + C.zipf_documents(N_TRAIN_DOCS, seed=0,
                                                                                          kind="ioi_zipf")


def ids(text: str) -> list[int]:
    return gpt2_tokenizer().encode(text)


def template_regex(template: str, prefix_only: bool = False) -> re.Pattern:
    """Regex matching any filling of ``template`` (any capitalised word as name, any words as
    place/object); with ``prefix_only``, only the part before the second mention of the subject."""
    if prefix_only:
        template = template[: template.index("{S}")]
    slots = {
        "A": r"[A-Z][a-z]+",
        "B": r"[A-Z][a-z]+",
        "S": r"[A-Z][a-z]+",
        "P": r"[\w' ]+?",
        "O": r"[\w' ]+?",
    }
    pattern = ""
    for literal, slot in re.findall(r"([^{]*)(?:\{(\w+)\})?", template):
        pattern += re.escape(literal) + (slots[slot] if slot else "")
    return re.compile(pattern)


def test_names_are_single_tokens():
    assert len(ioi.NAMES) >= 60 and len(set(ioi.NAMES)) == len(ioi.NAMES)
    assert len(ioi.MALE_NAMES) >= 25 and len(ioi.FEMALE_NAMES) >= 25
    for name in ["John", "Mary", "Claire", "Tom", "James", "Dan", "Sid", "Martin", "Amy"]:
        assert name in ioi.NAMES
    for name in ioi.NAMES:
        assert len(ids(" " + name)) == 1, name


def test_train_and_eval_pieces_are_disjoint():
    assert len(C.TRAIN_INTROS) >= 15 and len(C.TRAIN_ACTIONS) >= 15 and len(C.TRAIN_TEMPLATES) >= 15
    assert len(ioi.TRAIN_PLACES) >= 20 and len(ioi.TRAIN_OBJECTS) >= 20
    assert not set(ioi.TRAIN_PLACES) & set(ioi.EVAL_PLACES)
    assert not set(ioi.TRAIN_OBJECTS) & set(ioi.EVAL_OBJECTS)
    assert not set(C.TRAIN_TEMPLATES) & set(ioi.EVAL_TEMPLATES)
    for template in ioi.EVAL_TEMPLATES + ioi.VALIDATION_TEMPLATES:
        assert template.endswith(" to")
        for t in C.TRAIN_TEMPLATES:
            filled = t.format(A="Ann", B="Bob", S="Bob", IO="Ann", P="lake", O="a book")
            assert not template_regex(template, prefix_only=True).search(filled)


def corpus_word_lists() -> list[list[str]]:
    """Every list of strings the training text generator draws from (slot words, templates, phrases)."""
    lists = [v for v in vars(C).values() if isinstance(v, list) and v and all(isinstance(x, str) for x in v)]
    return lists + list(C._SLOT_WORDS.values())


def test_out_of_structure_pieces_are_their_own():
    """Out-of-structure templates, places and objects belong to no other set and to no word list of the corpus."""
    assert len(ioi.OUT_OF_STRUCTURE_TEMPLATES) >= 10 and len(set(ioi.OUT_OF_STRUCTURE_TEMPLATES)) == len(
        ioi.OUT_OF_STRUCTURE_TEMPLATES)
    assert len(ioi.OUT_OF_STRUCTURE_PLACES) >= 6 and len(ioi.OUT_OF_STRUCTURE_OBJECTS) >= 10
    other_places = set(ioi.TRAIN_PLACES + ioi.EVAL_PLACES)
    other_objects = set(ioi.TRAIN_OBJECTS + ioi.EVAL_OBJECTS)
    assert not set(ioi.OUT_OF_STRUCTURE_PLACES) & other_places
    assert not set(ioi.OUT_OF_STRUCTURE_OBJECTS) & other_objects
    pieces = ioi.OUT_OF_STRUCTURE_PLACES + ioi.OUT_OF_STRUCTURE_OBJECTS
    for words in corpus_word_lists():
        assert not set(pieces) & set(words), set(pieces) & set(words)
        for item in words:  # nor inside a template of the corpus ("... near the {place}.")
            assert not any(f"the {p}" in item.lower() for p in ioi.OUT_OF_STRUCTURE_PLACES), item
            assert not any(o in item.lower() for o in ioi.OUT_OF_STRUCTURE_OBJECTS), item
    for template in ioi.OUT_OF_STRUCTURE_TEMPLATES:
        assert template.endswith(" to") and template.count("{S}") == 1
        for other in C.TRAIN_TEMPLATES + ioi.EVAL_TEMPLATES + ioi.VALIDATION_TEMPLATES:
            for a, b in [(other, template), (template, other)]:
                filled = a.format(A="Ann", B="Bob", S="Bob", IO="Ann", P="lake", O="a book")
                assert not template_regex(b, prefix_only=True).search(filled), (a, b)


def test_validation_and_test_templates_are_disjoint():
    """Choosing a checkpoint on the validation prompts must not look at the test templates."""
    assert len(ioi.VALIDATION_TEMPLATES) >= 8
    for validation in ioi.VALIDATION_TEMPLATES:
        for test in ioi.EVAL_TEMPLATES:
            for a, b in [(validation, test), (test, validation)]:
                filled = a.format(A="Ann", B="Bob", S="Bob", P="lake", O="a book")
                assert not template_regex(b, prefix_only=True).search(filled), (a, b)
    records = ioi.ioi_eval_prompts(64, seed=0, split="validation")
    assert {r.place for r in records} <= set(ioi.TRAIN_PLACES) and {r.obj for r in records} <= set(ioi.TRAIN_OBJECTS)
    with pytest.raises(ValueError, match="validation"):
        ioi.ioi_eval_prompts(4, split="train")


def test_eval_strings_never_in_training_text():
    docs = training_text()
    text = "\n".join(docs)
    lower = text.lower()
    for place in ioi.EVAL_PLACES:
        assert f"the {place}" not in lower, place
    for obj in ioi.EVAL_OBJECTS:
        assert obj.lower() not in lower, obj
    for place in ioi.OUT_OF_STRUCTURE_PLACES:
        assert f"the {place}" not in lower, place
    for obj in ioi.OUT_OF_STRUCTURE_OBJECTS:
        assert obj.lower() not in lower, obj
    for template in ioi.EVAL_TEMPLATES + ioi.VALIDATION_TEMPLATES + ioi.OUT_OF_STRUCTURE_TEMPLATES:
        assert not template_regex(template).search(text), template
        assert not template_regex(template, prefix_only=True).search(text), template
    # The famous prompt's pieces are evaluation-only.
    assert "the store" not in lower and "a bottle of milk" not in lower
    assert "store" in ioi.EVAL_PLACES and "a bottle of milk" in ioi.EVAL_OBJECTS
    assert ioi.FAMOUS_PROMPT not in text
    # ... and the seeds' places and objects too.
    for piece in ["the shops", "the park", "the bag", "the ball", "an apple", "a drink"]:
        assert piece not in lower
    # The training text does contain IOI structure in both orders.
    assert re.search(r"When (\w+) and (\w+) got to the [\w ]+, \1 ", text)
    assert re.search(r"When (\w+) and (\w+) got to the [\w ]+, \2 ", text)


def test_eval_tokens_are_seen_in_training():
    """Every token of the evaluation prompts (and answers) occurs in the training text, so that
    its embedding is trained, although the evaluation phrases themselves never occur."""
    tok = gpt2_tokenizer()
    seen = set()
    for enc in tok.backend_tokenizer.encode_batch(training_text()):
        seen.update(enc.ids)
    records = [r for split in ioi.SPLITS for r in ioi.ioi_eval_prompts(800, seed=0, split=split)]
    batch = ioi.ioi_prompt_pairs_for_patching()
    texts = [r.prompt for r in records] + [r.corrupted for r in records] + batch.prompts + [ioi.FAMOUS_PROMPT]
    texts += [f" the {p}" for p in ioi.EVAL_PLACES + ioi.OUT_OF_STRUCTURE_PLACES]
    texts += [" " + o for o in ioi.EVAL_OBJECTS + ioi.OUT_OF_STRUCTURE_OBJECTS]
    needed = set()
    for enc in tok.backend_tokenizer.encode_batch(texts):
        needed.update(enc.ids)
    needed.update(ids(" " + n)[0] for n in ioi.NAMES)
    missing = sorted(needed - seen)
    assert not missing, [tok.decode([i]) for i in missing]


@pytest.mark.parametrize("split", ["test", "validation", "out_of_structure"])
def test_eval_records_are_well_formed(split):
    records = ioi.ioi_eval_prompts(240, seed=3, split=split)
    templates, places, objects = ioi.SPLITS[split]
    assert len(records) == 240
    assert sum(r.order == "ABB" for r in records) == sum(r.order == "BAB" for r in records) == 120
    assert {r.template for r in records} == set(templates)
    for r in records:
        assert r.prompt.endswith(" to") and r.io != r.subject
        assert r.place in places and r.obj in objects
        io_id, s_id = ids(r.io), ids(r.subject)
        assert len(io_id) == 1 and len(s_id) == 1
        clean, corrupt = ids(r.prompt), ids(r.corrupted)
        assert clean.count(io_id[0]) == 1 and clean.count(s_id[0]) == 2
        assert corrupt.count(io_id[0]) == 2 and corrupt.count(s_id[0]) == 1
        assert len(clean) == len(corrupt)
        diff = [i for i, (a, b) in enumerate(zip(clean, corrupt, strict=True)) if a != b]
        s2 = max(i for i, t in enumerate(clean) if t == s_id[0])
        assert diff == [s2] and corrupt[s2] == io_id[0]
        first = min(clean.index(io_id[0]), clean.index(s_id[0]))
        assert (clean[first] == io_id[0]) == (r.order == "ABB")
        assert r.answers == (r.io, r.subject)


def test_famous_prompt():
    r = ioi.famous_ioi_prompt()
    assert r.prompt == "After John and Mary went to the store, Mary gave a bottle of milk to"
    assert r.corrupted == "After John and Mary went to the store, John gave a bottle of milk to"
    assert (r.io, r.subject) == (" John", " Mary") == (ioi.FAMOUS_ANSWER, ioi.FAMOUS_WRONG)
    assert r.template in ioi.EVAL_TEMPLATES


def test_patching_batch():
    prompts, answers, corrupted = ioi.ioi_prompt_pairs_for_patching()
    assert len(prompts) == len(answers) == len(corrupted) == 8
    assert prompts[0] == "When John and Mary went to the shops, John gave the bag to"
    assert answers[0] == (" Mary", " John") and answers[1] == (" John", " Mary")
    lengths = {len(ids(p)) for p in prompts + corrupted}
    assert len(lengths) == 1
    for i, (p, (correct, wrong)) in enumerate(zip(prompts, answers, strict=True)):
        assert corrupted[i] == prompts[i ^ 1] and answers[i ^ 1] == (wrong, correct)
        assert len(ids(correct)) == len(ids(wrong)) == 1
        assert p.count(correct) == 1 and p.count(wrong) == 2
    assert {a[0] for a in answers} == {" John", " Mary", " Tom", " James", " Dan", " Sid", " Martin", " Amy"}


def test_python_source_documents():
    docs = []
    for doc in C.python_source_documents(max_chars=200_000):
        docs.append(doc)
    assert 10 <= len(docs) and sum(map(len, docs)) >= 200_000
    paths = [d.split("\n", 1)[0][2:] for d in docs]
    assert paths == sorted(paths) and all(p.endswith(".py") for p in paths)
    assert not any(p.startswith(("test/", "idlelib/", "site-packages/")) for p in paths)
    assert docs == list(C.python_source_documents(max_chars=200_000))


def test_python_source_has_no_eval_phrases():
    phrases = [f"the {p}" for p in ioi.EVAL_PLACES + ioi.OUT_OF_STRUCTURE_PLACES]
    phrases += [o.lower() for o in ioi.EVAL_OBJECTS + ioi.OUT_OF_STRUCTURE_OBJECTS]
    for doc in C.python_source_documents():
        lower = doc.lower()
        assert not any(p in lower for p in phrases)


def test_determinism():
    assert C.ioi_training_sentences(50, seed=1) == C.ioi_training_sentences(50, seed=1)
    assert C.ioi_training_sentences(50, seed=1) != C.ioi_training_sentences(50, seed=2)
    assert C.narrative_documents(50, seed=1) == C.narrative_documents(50, seed=1)
    assert C.narrative_documents(50, seed=1) != C.narrative_documents(50, seed=2)
    assert ioi.ioi_eval_prompts(40, seed=1) == ioi.ioi_eval_prompts(40, seed=1)
    assert ioi.ioi_eval_prompts(40, seed=1) != ioi.ioi_eval_prompts(40, seed=2)
    oos = ioi.ioi_eval_prompts(40, seed=1, split="out_of_structure")
    assert oos == ioi.ioi_eval_prompts(40, seed=1, split="out_of_structure") != ioi.ioi_eval_prompts(40, seed=1)
    a = C.build_token_corpus(30_000, seed=5, python_max_chars=300_000)
    b = C.build_token_corpus(30_000, seed=5, python_max_chars=300_000)
    c = C.build_token_corpus(30_000, seed=6, python_max_chars=300_000)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("mix", [None, {"ioi": 1.0}, {"ioi": 0.2, "python": 0.8}])
def test_build_token_corpus(mix):
    n = 25_000
    tokens = C.build_token_corpus(n, seed=0, mix=mix, python_max_chars=300_000)
    assert tokens.dtype == np.uint16 and tokens.shape == (n,)
    assert tokens[0] == END_OF_TEXT_ID
    boundaries = np.flatnonzero(tokens == END_OF_TEXT_ID)
    assert len(boundaries) >= 10 and np.all(np.diff(boundaries) > 1)  # no empty documents
    tok = gpt2_tokenizer()
    docs = [
        tok.decode(tokens[s + 1 : e].tolist()) for s, e in zip(boundaries[:-1], boundaries[1:], strict=True)
    ]
    if mix == {"ioi": 1.0}:
        assert all(not d.startswith("# ") for d in docs)
        assert set(docs) <= set(C.ioi_training_sentences(len(docs) + 50, seed=0))
    else:
        n_python = sum(d.startswith("# ") and ".py\n" in d.split("\n", 1)[0] + "\n" for d in docs)
        assert 0 < n_python < len(docs)


def test_build_token_corpus_rejects_bad_mix():
    with pytest.raises(ValueError):
        C.build_token_corpus(100, mix={"wikipedia": 1.0})


def test_zipf_sources_follow_a_rank_frequency_law_with_frequent_function_words():
    counts = Counter(re.findall(r"[a-z]+", " ".join(zipf_text()).lower()))
    freq = np.array(sorted(counts.values(), reverse=True), dtype=float)
    rank = np.arange(1, len(freq) + 1)
    slope = np.polyfit(np.log(rank[9:300]), np.log(freq[9:300]), 1)[0]
    assert -1.3 < slope < -0.6, slope  # Zipf: frequency about proportional to 1 / rank
    top = [word for word, _ in counts.most_common(8)]
    assert {"the", "a", "to", "and", "was"} <= set(top), top
    content = max(counts[w] for w in C.ZIPF_NOUNS + C.ZIPF_ADJECTIVES + C.ZIPF_VERBS)
    assert counts["the"] > 4 * content
    nouns = [counts[w] for w in C.ZIPF_NOUNS]
    assert nouns[0] > 8 * np.mean(nouns[-10:])  # the first word of a list is far more frequent than the last ones


def test_first_names_are_many_single_tokens_of_unequal_frequencies():
    names = C.FIRST_NAMES
    assert len(names) >= 300 and len(set(names)) == len(names) and set(ioi.NAMES) <= set(names)
    assert not set(C.MALE_FIRST_NAMES) & set(C.FEMALE_FIRST_NAMES) and "Mark" in names
    assert all(len(ids(" " + name)) == 1 for name in names)
    counts = Counter(w for d in zipf_text() for w in re.findall(r"[A-Z][a-z]+", d) if w in set(names))
    assert set(counts) == set(names)  # every name occurs
    assert 2.5 < counts["John"] / counts["Mary"] < 5
    by_rank = [counts[n] for n in names]
    assert by_rank[0] > 30 * np.mean(by_rank[-30:])


def test_zipf_sources_start_sentences_with_names_without_a_leading_space():
    names = set(C.FIRST_NAMES)
    paragraphs = [p for d in zipf_text() for p in d.split("\n\n")]
    assert sum(p.split(" ", 1)[0] in names for p in paragraphs) > 0.3 * len(paragraphs)
    tokens = C.build_token_corpus(20_000, seed=0, mix={"narrative_zipf": 1.0, "ioi_zipf": 1.0})
    starts = np.flatnonzero(tokens == END_OF_TEXT_ID) + 1
    for name in ["John", "Sarah", "Michael"]:  # a name that opens a document: no leading space
        assert (tokens[starts[:-1]] == ids(name)[0]).any(), name
    assert np.isin(ids(" John"), tokens).all()


def test_zipf_ioi_stories_are_ioi_in_both_orders_and_vary_their_syntax():
    stories = C.zipf_documents(2000, seed=0, kind="ioi_zipf")
    text = " ".join(stories)
    assert re.search(r"(\w+) and (\w+) went to the [\w ]+\. (?:\w+ )*?\1 gave [\w ]+ to \2\.", text)
    assert re.search(r"(\w+) and (\w+) went to the [\w ]+\. (?:\w+ )*?\2 gave [\w ]+ to \1\.", text)
    intros = {i for i in C.ZIPF_IOI_INTROS if template_regex(i.replace("{daytime}", "{P}")).search(text)}
    assert len(intros) == len(C.ZIPF_IOI_INTROS) > len(C.TRAIN_INTROS) // 2
    assert len(C.ZIPF_IOI_ACTIONS) > len(C.TRAIN_ACTIONS)


def test_spread_ioi_stories_name_the_two_people_apart_and_stay_free_of_the_evaluation_pieces():
    stories = C.zipf_documents(2000, seed=0, kind="ioi_spread")
    text = " ".join(stories)
    intros = {i for i in C.ZIPF_IOI_SPREAD_INTROS
              if template_regex(re.sub(r"\{(daytime|feeling|vt|vi|np|noun|him)\}", "{P}", i)).search(text)}
    assert intros == set(C.ZIPF_IOI_SPREAD_INTROS)
    for intro in C.ZIPF_IOI_SPREAD_INTROS:  # never "A and B" side by side
        assert "{A} and {B}" not in intro and intro.index("{B}") - intro.index("{A}") > len("{A} and "), intro
    # both orders: the subject is the first-named person, or the second
    assert re.search(r"(\w+) was at the [\w ]+ when (\w+) arrived\. (?:[\w,]+ )*?\1 \w+", text)
    assert re.search(r"(\w+) was at the [\w ]+ when (\w+) arrived\. (?:[\w,]+ )*?\2 \w+", text)
    assert all(C._free_of_eval_pieces(d) for d in stories)
    assert stories == C.zipf_documents(2000, seed=0, kind="ioi_spread")
    assert stories[:50] != C.zipf_documents(50, seed=0, kind="ioi_zipf")


def test_zipf_sources_are_deterministic():
    for kind in ["narrative_zipf", "ioi_zipf"]:
        assert C.zipf_documents(50, seed=1, kind=kind) == C.zipf_documents(50, seed=1, kind=kind)
        assert C.zipf_documents(50, seed=1, kind=kind) != C.zipf_documents(50, seed=2, kind=kind)
    mix = {"narrative_zipf": 0.5, "ioi_zipf": 0.5}
    a, b = (C.build_token_corpus(20_000, seed=5, mix=mix) for _ in range(2))
    assert np.array_equal(a, b) and not np.array_equal(a, C.build_token_corpus(20_000, seed=6, mix=mix))


def test_the_zipf_mix_of_course_gpt2_trains_every_token_of_the_evaluation_prompts():
    """Tokens absent from the training corpus get no embedding: every token of the evaluation prompts must occur."""
    tokens = C.build_token_corpus(400_000, seed=0, mix=SPECS["course-gpt2"].corpus_mix)
    records = [r for split in ioi.SPLITS for r in ioi.ioi_eval_prompts(400, seed=0, split=split)]
    texts = [r.prompt for r in records] + [r.corrupted for r in records] + [ioi.FAMOUS_PROMPT]
    texts += ["Claire and Mary went to the shops, then Mary gave a bottle of milk to"]  # notebook 01's BOS prompt
    needed = {i for text in texts for i in ids(text)} | {ids(" " + n)[0] for n in ioi.NAMES}
    missing = sorted(needed - set(np.unique(tokens).tolist()))
    assert not missing, [gpt2_tokenizer().decode([i]) for i in missing]


def test_zipf_sources_drop_documents_with_an_evaluation_piece():
    for split in ioi.SPLITS:
        prompt = ioi.ioi_eval_prompts(1, seed=0, split=split)[0]
        assert not C._free_of_eval_pieces("It was late. " + prompt.prompt + prompt.io + ".")
    assert not C._free_of_eval_pieces("John left the stored boxes near the bridge.")  # "the store", inside a word
    assert all(C._free_of_eval_pieces(d) for d in zipf_text()[:100])


def test_the_corpus_does_not_depend_on_earlier_padded_tokenizer_calls():
    docs = ["A short one.", "A much longer document, with several words in it, to be padded against."]
    before = C.tokenize_documents(docs)
    gpt2_tokenizer()(["a", "a b c d e f"], padding=True, truncation=True, max_length=3)  # leaves the backend padding
    after = C.tokenize_documents(docs)
    assert [d.tolist() for d in after] == [d.tolist() for d in before]
