"""The training text of the course's language models: deterministic, generated offline.

GPT-2 small cannot be downloaded where the course is built, so the course trains its own small
language models on a corpus made here, offline, from three sources:

* ``"ioi"``: short synthetic stories in which two people are introduced and one of them then
  gives something to the other ("... Kate handed a red umbrella to Paul."), mixed with other
  sentences about named people (lists, dialogue, one person doing several things, three people,
  reciprocal actions) so that "the name that comes next" is not always the indirect object;
* ``"ioi_varied"``: the same stories, but the introduction and the action are more often
  separated or reworded (a time phrase in front, a sentence without names in between, other
  connectives), so the IOI structure is not always at the same distance and in the same words;
* ``"narrative"``: simple synthetic English narrative sentences (animals, weather, places, people);
* ``"python"``: chunks of the Python standard library source of the running interpreter.

The IOI *evaluation* prompts (helpers.ioi) are built from templates, places and objects that never
occur in this text (tests check this), so a model that solves them has learned the task rather than
memorised sentences. Names, places and objects come from helpers.ioi.

Everything is deterministic: the same seed gives the same text and the same tokens.
See ``data/corpus.md`` for the recipe and provenance.
"""

from __future__ import annotations

import random
import re
import sysconfig
from collections.abc import Iterator
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from helpers.ioi import EVAL_OBJECTS, EVAL_PLACES, NAMES, TRAIN_OBJECTS, TRAIN_PLACES
from helpers.tokenizer import END_OF_TEXT, END_OF_TEXT_ID, gpt2_tokenizer

DEFAULT_MIX = {"ioi": 0.5, "python": 0.25, "narrative": 0.25}
SOURCES = ("ioi", "ioi_varied", "narrative", "python")

# --------------------------------------------------------------------------------------------
# IOI templates. {A} and {B} are the two names in order of introduction, {S} is the subject
# (repeated name), {IO} the indirect object, {P} a place, {O} an object.
# --------------------------------------------------------------------------------------------

#: Training introductions of two people. Clauses ending with "," are followed directly by an
#: action; sentences ending with "." may be followed by a connective ("Then", "Later, ", ...).
TRAIN_INTROS = [
    "When {A} and {B} got to the {P},",
    "After {A} and {B} arrived at the {P},",
    "{A} and {B} were at the {P}.",
    "{A} and {B} went to the {P} together.",
    "One day, {A} and {B} visited the {P}.",
    "Once {A} and {B} reached the {P},",
    "As soon as {A} and {B} walked into the {P},",
    "{A} met {B} at the {P}.",
    "Last week, {A} and {B} spent the afternoon at the {P}.",
    "{A} and {B} were sitting near the {P}.",
    "While {A} and {B} were waiting at the {P},",
    "Early in the morning, {A} and {B} left for the {P}.",
    "{A} and {B} had lunch at the {P}.",
    "Before {A} and {B} left the {P},",
    "At the {P}, {A} and {B} were talking.",
    "{A} and {B} were cleaning the {P}.",
    "{A} and {B} decided to go to the {P}.",
    "It was late when {A} and {B} came back from the {P}.",
    "{A} and {B} walked home from the {P}.",
    "{A} and {B} were playing near the {P}.",
    "After lunch, {A} and {B} stopped at the {P}.",
    "{A} and {B} were both at the {P} that day.",
    "During the trip to the {P}, {A} and {B} laughed a lot.",
    "{A} and {B} were happy to be at the {P}.",
    "As {A} and {B} were leaving the {P},",
    "When {A} and {B} were at the {P},",
    "{A} and {B} worked at the {P}.",
    "In the evening, {A} and {B} went for a walk to the {P}.",
]
#: Connectives that may start an action sentence after an intro ending with ".".
CONNECTIVES = ["", "", "Then ", "Later, ", "After a while, ", "Soon ", "Then, ", "Suddenly, "]
#: Training actions: {S} does something whose recipient {IO} is the correct next name.
TRAIN_ACTIONS = [
    "{S} gave {O} to {IO}.",
    "{S} handed {O} to {IO}.",
    "{S} passed {O} to {IO}.",
    "{S} threw {O} to {IO}.",
    "{S} sent {O} to {IO}.",
    "{S} lent {O} to {IO}.",
    "{S} showed {O} to {IO}.",
    "{S} brought {O} to {IO}.",
    "{S} sold {O} to {IO}.",
    "{S} tossed {O} to {IO}.",
    "{S} offered {O} to {IO}.",
    "{S} gave {IO} {O}.",
    "{S} handed {IO} {O}.",
    "{S} wanted to give {O} to {IO}.",
    "{S} decided to give {O} to {IO}.",
    "{S} gave {O} back to {IO}.",
    "{S} found {O} and gave it to {IO}.",
    "{S} took {O} and handed it to {IO}.",
    "{S} bought {O} for {IO}.",
    "{S} said goodbye to {IO}.",
    "{S} said hello to {IO}.",
    "{S} waved at {IO}.",
    "{S} smiled at {IO}.",
    "{S} wrote a letter to {IO}.",
    "{S} told a funny story to {IO}.",
    "{S} asked {IO} a question.",
    "{S} talked to {IO} for a long time.",
    "{S} made a cake for {IO}.",
    "{S} gave a present to {IO}.",
    "{S} passed the salt to {IO}.",
]
#: ``"ioi_varied"`` only: time phrases put in front of an intro ("On Monday, when A and B ..."),
#: more connectives, and ways of joining an intro ending with "." to the action.
TIME_PHRASES = [
    "On Monday", "Last summer", "That evening", "This morning", "Two days ago", "At noon", "In the spring",
    "On a cold night", "Last year", "At the weekend", "Around midday", "That winter", "On Saturday",
    "A few weeks ago", "Late at night", "In the autumn",
]  # fmt: skip
VARIED_CONNECTIVES = CONNECTIVES + [
    "Afterwards, ", "Eventually, ", "A bit later, ", "At last, ", "Next, ", "That day, ", "So ", "And then ",
    "Before long, ", "At one point, ",
]  # fmt: skip
#: Training IOI templates: every intro combined with every action.
TRAIN_TEMPLATES = [f"{intro} {action}" for intro in TRAIN_INTROS for action in TRAIN_ACTIONS]
#: Short sentences that may follow an IOI action.
FOLLOW_UPS = [
    "{IO} thanked {S}.",
    "{IO} smiled.",
    "{IO} was very happy.",
    "{IO} said thank you to {S}.",
    "{S} and {IO} laughed.",
    '"Thank you," said {IO}.',
    "It was a kind thing to do.",
    "{IO} did not expect that.",
]

# --------------------------------------------------------------------------------------------
# Vocabulary for the narrative sentences (and the non-IOI name sentences).
# --------------------------------------------------------------------------------------------

_ANIMALS = ["cat", "dog", "bird", "horse", "rabbit", "fox", "duck", "mouse", "cow", "sheep", "owl", "frog"]
_ADJS = [
    "little", "big", "young", "happy", "sleepy", "brown", "white", "small", "clever", "shy", "tall", "funny",
]  # fmt: skip
_PEOPLE = [
    "the old man", "a young girl", "the farmer", "a little boy", "the teacher", "the baker",
    "the old sailor", "an old woman", "the doctor", "the fisherman", "a tall stranger", "the king",
]  # fmt: skip
_FEELINGS = ["happy", "tired", "sad", "hungry", "excited", "calm", "surprised", "proud", "cold", "bored"]
_WEATHER = ["sunny", "cold", "rainy", "windy", "warm", "cloudy", "quiet", "bright", "snowy", "long"]
_TIMES = ["morning", "day", "evening", "night", "afternoon", "week"]
_COLOURS = ["red", "blue", "green", "yellow", "grey", "white", "dark", "orange", "pink", "purple"]
_FOODS = ["bread", "soup", "rice", "an orange", "a banana", "some cake", "a cookie", "some cheese", "pasta"]
_ACTIVITIES = [
    "read books", "sing songs", "draw pictures", "play football", "swim in the lake", "ride a bike",
    "cook dinner", "watch the stars", "write stories", "plant flowers", "climb trees", "bake bread",
]  # fmt: skip
_THINGS = ["music", "tea", "dogs", "cats", "rain", "snow", "maths", "history", "trains", "painting"]
_FURNITURE = ["table", "chair", "bed", "shelf", "desk", "floor", "sofa", "window"]
_ANIMAL_ACTIONS = [
    "slept under the {F}", "ran across the road", "sat on the {F}", "looked out of the window",
    "jumped over the fence", "ate some grass", "chased a butterfly", "hid behind a tree",
    "played in the snow", "walked along the river", "sang a song", "drank some water",
]  # fmt: skip

#: Sentences that start a narrative document (first tokens of a document have no leading space).
_NARRATIVE_OPENERS = [
    "Once upon a time, there was a {adj} {animal}.",
    "It was a {weather} {time}.",
    "The {animal} was {feeling}.",
    "On a {weather} {time}, the village was quiet.",
    "Yesterday it was {weather} all day.",
    "When the sun came up, the birds began to sing.",
    "After the rain, the streets were wet.",
    "While the town was sleeping, a {adj} {animal} {aa}.",
    "Friends are important.",
    "Then the wind started to blow.",
    "Every {time}, {person} went for a walk.",
    "In a small village, there lived {person}.",
    "One {time}, everybody was {feeling}.",
    "Long ago, a {adj} {animal} lived near the {place}.",
    "This is a story about a {adj} {animal}.",
    "At the end of the {time}, everyone went home.",
]
#: General narrative sentences. The last few make sure that the words of the evaluation-only
#: places and objects appear in training, but never in the evaluation phrases themselves.
_NARRATIVE_SENTENCES = _NARRATIVE_OPENERS + [
    "The {adj} {animal} {aa}.",
    "{Person} was {feeling}.",
    "{Person} liked to {activity}.",
    "The sky was {colour}.",
    "There was a {colour} box on the {F}.",
    "{Person} lived in a small house near the {place}.",
    "Everyone was {feeling} that {time}.",
    "It started to rain, so {person} went inside.",
    "{Person} walked to the {place} and back.",
    "The {place} was full of people.",
    "A {adj} {animal} lived near the {place}.",
    "{Person} had a {adj} {animal}.",
    "{Person} ate {food} for lunch.",
    "The {animal} and the {animal2} were friends.",
    "In the {time}, the {place} was very quiet.",
    "{Person} found a {colour} stone on the ground.",
    "Nobody knew where the {animal} had gone.",
    "The road to the {place} was long.",
    "{Person} was relaxing in the garden.",
    "They were working hard all {time}.",
    "It was fun, and they had a lot of it.",
    "They talked for a while and then went home.",
    "The room was quiet when they arrived.",
    "On the way home, {person} saw a {adj} {animal}.",
    "Then everybody went to sleep.",
    "There was a small store on the corner of the street.",
    "Many shops were closed on Sunday.",
    "They could not find a place to park the car.",
    "A zoo keeper fed the animals every morning.",
    "They bought two cinema tickets for Saturday.",
    "A museum guide told them about the old castle.",
    "{Person} packed a beach towel and a hat.",
    "{Person} returned some library books.",
    "The milk was fresh and cold.",
    "{Person} ate an orange and some apple pie.",
    "The kite flew high above the hill.",
    "A glass of water helped a lot.",
]
#: Non-IOI sentences about named people: the next name is not always the indirect object.
_NAME_EPISODES = [
    "{A} went to the {P}. There, {A} bought {O}.",
    "{A} was tired, so {A} went to bed early.",
    "{A} looked at {O} for a long time. {A} liked it a lot.",
    "{A} and {B} were at the {P}. {S} was hungry, so {S} ate {food}.",
    "{A} and {B} went to the {P}. {S} felt {feeling}, and {S} sat down.",
    "{A}, {B} and {C} were invited to the party.",
    "At the {P} there were {A}, {B}, {C} and {D}.",
    '"Hello, {B}," said {A}. "Hello, {A}," said {B}.',
    '{A} said to {B}, "Let us go to the {P}." {B} said yes.',
    "{A} smiled at {B}, and {B} smiled back at {A}.",
    "{A}, {B} and {C} went to the {P}. {A} and {C} gave {O} to {B}.",
    "{A} and {B} are friends. {A} likes {thing}, and {B} likes {thing2}.",
    "{A} asked {B} for help, and {B} helped {A}.",
    "{A} is the brother of {B}.",
    "{A} and {B} played a game. {S} won the game.",
    "{A} has a {adj} {animal}. Every {time}, {A} takes the {animal} to the {P}.",
    "Who gave {O} to {B}? It was {A}.",
    "{A} called {B}, but {B} did not answer.",
    "{A} wrote a letter. Then {A} took the letter to the {P}.",
    "{A} and {B} cooked dinner. {A} made soup and {B} made {food}.",
]
_DOC_OPENER_IOI = [
    "This is a short story.",
    "It was a {weather} {time}.",
    "Here is what happened.",
    "The {time} was {weather}.",
    "Everyone was {feeling} that {time}.",
]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# The words each grammar slot ({person}, {food}, ...) is filled with.
_SLOT_WORDS = {
    "person": _PEOPLE, "animal": _ANIMALS, "adj": _ADJS, "feeling": _FEELINGS, "weather": _WEATHER,
    "time": _TIMES, "colour": _COLOURS, "food": _FOODS, "activity": _ACTIVITIES, "thing": _THINGS,
    "F": _FURNITURE, "place": TRAIN_PLACES, "P": TRAIN_PLACES, "O": TRAIN_OBJECTS,
}


def _fill(rng: random.Random, template: str, **known: str) -> str:
    """Fill the grammar slots of ``template`` (names/places/objects may be passed in ``known``)."""
    values: dict[str, str] = {}

    def pick(key: str) -> str:
        if key in known:
            return known[key]
        if key not in values:
            if key in _SLOT_WORDS:
                values[key] = rng.choice(_SLOT_WORDS[key])
            elif key == "Person":
                values[key] = _cap(pick("person"))
            elif key in ("animal2", "thing2"):  # a second, different animal / thing
                first = pick(key[:-1])
                values[key] = rng.choice([w for w in _SLOT_WORDS[key[:-1]] if w != first])
            elif key == "aa":
                values[key] = _fill(rng, rng.choice(_ANIMAL_ACTIONS))
            else:
                raise KeyError(key)
        return values[key]

    return re.sub(r"\{(\w+)\}", lambda m: pick(m.group(1)), template)


# --------------------------------------------------------------------------------------------
# Training text generators
# --------------------------------------------------------------------------------------------


def _ioi_episode(rng: random.Random, varied: bool = False) -> str:
    """Two people introduced, then one (the subject) acts towards the other (the indirect object).

    With ``varied``, the intro may get a time phrase in front, and an intro ending with "." may be
    followed by a sentence without names, or joined to the action by ", and" / ", so".
    """
    a, b = rng.sample(NAMES, 2)
    s, io = (b, a) if rng.random() < 0.5 else (a, b)  # ABB or BAB
    place, obj = rng.choice(TRAIN_PLACES), rng.choice(TRAIN_OBJECTS)
    intro = rng.choice(TRAIN_INTROS).format(A=a, B=b, P=place)
    action = rng.choice(TRAIN_ACTIONS).format(S=s, IO=io, O=obj)
    if varied and rng.random() < 0.3:
        first = intro.split(" ", 1)[0]
        lowered = intro if first.strip(",.") in _NAME_SET else first.lower() + intro[len(first):]
        intro = rng.choice(TIME_PHRASES) + rng.choice([", ", " "]) + lowered
    r = rng.random() if varied else 1.0
    if intro.endswith(","):
        parts = [intro, action]
    elif r < 0.3:  # a sentence without names between the two people and the action
        parts = [intro, _narrative_sentence(rng), rng.choice(VARIED_CONNECTIVES) + action]
    elif r < 0.5:
        parts = [intro[:-1] + rng.choice([", and", ", so"]), action]
    else:
        parts = [intro, rng.choice(VARIED_CONNECTIVES if varied else CONNECTIVES) + action]
    r = rng.random()
    if r < 0.3:
        parts.append(rng.choice(FOLLOW_UPS).format(S=s, IO=io))
    elif r < 0.55:  # a second event between the same two people
        s2, io2 = (a, b) if rng.random() < 0.5 else (b, a)
        action2 = rng.choice(TRAIN_ACTIONS).format(S=s2, IO=io2, O=rng.choice(TRAIN_OBJECTS))
        parts.append(rng.choice(["Later, ", "Then ", "After that, ", "The next day, "]) + action2)
    return " ".join(parts)


def _name_episode(rng: random.Random) -> str:
    """Sentences about named people that are not IOI (repetitions, lists, dialogue, ...)."""
    a, b, c, d = rng.sample(NAMES, 4)
    return _fill(rng, rng.choice(_NAME_EPISODES), A=a, B=b, C=c, D=d, S=rng.choice([a, b]))


def _narrative_sentence(rng: random.Random, opener: bool = False) -> str:
    return _fill(rng, rng.choice(_NARRATIVE_OPENERS if opener else _NARRATIVE_SENTENCES))


def _starts_with_name(text: str) -> bool:
    return text.split(" ", 1)[0].strip(",.\"'") in _NAME_SET


_NAME_SET = frozenset(NAMES)


def _ioi_document(rng: random.Random, varied: bool = False) -> str:
    """One training document: 1-3 IOI episodes mixed with other name sentences and narrative."""
    pieces = [_ioi_episode(rng, varied) for _ in range(rng.choice([1, 1, 2, 2, 3]))]
    for _ in range(rng.choice([0, 1, 1, 2])):
        pieces.insert(rng.randrange(len(pieces) + 1), _name_episode(rng))
    if rng.random() < 0.3:
        pieces.insert(rng.randrange(len(pieces) + 1), _narrative_sentence(rng))
    # A name at the very start of a document would be the token "John", not " John": add an opener.
    if _starts_with_name(pieces[0]):
        pieces.insert(0, _fill(rng, rng.choice(_DOC_OPENER_IOI)))
    return " ".join(pieces)


def _narrative_document(rng: random.Random) -> str:
    sentences = [_narrative_sentence(rng, opener=True)]
    for _ in range(rng.randint(2, 6)):
        if rng.random() < 0.15:
            sentences.append(_name_episode(rng))
        else:
            sentences.append(_narrative_sentence(rng))
    return " ".join(sentences)


def _doc_stream(kind: str, seed: int) -> Iterator[str]:
    # The seed string names the module this generator first lived in: changing it would change the text.
    rng = random.Random(f"helpers.corpus:{kind}:{seed}")
    make = {"ioi": _ioi_document, "ioi_varied": partial(_ioi_document, varied=True),
            "narrative": _narrative_document}[kind]
    while True:
        yield make(rng)


def ioi_training_sentences(n: int, seed: int = 0, varied: bool = False) -> list[str]:
    """``n`` training documents (a few sentences each) containing IOI structure.

    Each document has one to three IOI episodes (two names introduced, then the repeated name gives
    or says something to the other, which is the next name), in both orders (ABB and BAB), mixed
    with non-IOI sentences about named people and simple narrative sentences. ``varied`` gives the
    documents of the ``"ioi_varied"`` source.
    """
    stream = _doc_stream("ioi_varied" if varied else "ioi", seed)
    return [next(stream) for _ in range(n)]


def narrative_documents(n: int, seed: int = 0) -> list[str]:
    """``n`` short synthetic narrative documents (3 to 7 simple sentences)."""
    stream = _doc_stream("narrative", seed)
    return [next(stream) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Python standard library source
# --------------------------------------------------------------------------------------------

#: Directories of the standard library that are skipped (tests, IDLE, vendored packages, codecs
#: tables, generated data).
SKIPPED_STDLIB_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "idle_test", "lib2to3", "encodings",
     "pydoc_data", "turtledemo", "ensurepip", "__pycache__", "__phello__"}
)  # fmt: skip

# Evaluation-only phrases are kept out of the Python text as well: a chunk containing one, even as
# part of a longer word ("the stored value"), is dropped.
_EVAL_PHRASE_RE = re.compile(
    "|".join(re.escape(phrase) for phrase in [f"the {p}" for p in EVAL_PLACES] + EVAL_OBJECTS),
    re.IGNORECASE,
)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """Relative paths of the standard library ``.py`` files used, in sorted order."""
    root = stdlib_root()
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if set(rel.parts[:-1]) & SKIPPED_STDLIB_DIRS or rel.parts[0].startswith("config-"):
            continue
        if rel.name.startswith("_sysconfigdata"):  # generated at build time, differs across machines
            continue
        files.append(rel)
    return sorted(files, key=lambda p: p.as_posix())


def _split_source(text: str, chunk_chars: int) -> list[str]:
    """Split source code into chunks of about ``chunk_chars`` characters, cutting before a top-level
    statement or a method definition; very long statements (data tables) are cut at a blank line, or
    anywhere past ``4 * chunk_chars``."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        top_level = line[:1] not in ("", " ", "\t", "\n", ")", "]", "}", "#")
        method = line.startswith(("    def ", "    async def ", "    @"))
        blank = not line.strip()
        if current and (
            (size >= chunk_chars and (top_level or method))
            or (size >= 2 * chunk_chars and blank)
            or size >= 4 * chunk_chars
        ):
            chunks.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        chunks.append("".join(current))
    return [c.strip("\n") + "\n" for c in chunks if c.strip()]


def python_source_documents(max_chars: int = 10_000_000, chunk_chars: int = 3000) -> Iterator[str]:
    """Documents made of the Python standard library source, in a deterministic order.

    Files are the ``.py`` files under ``sysconfig.get_paths()["stdlib"]`` in sorted relative-path
    order, without test suites, IDLE, site-packages and the other ``SKIPPED_STDLIB_DIRS``. Each
    file is cut into chunks of about ``chunk_chars`` characters at top-level statements or methods; each
    chunk starts with a ``# <relative path>`` line. Chunks containing an evaluation-only IOI
    phrase ("the store", ...), even inside a longer word, are dropped. Stops once ``max_chars``
    characters have been yielded.
    """
    root = stdlib_root()
    total = 0
    for rel in stdlib_files():
        try:
            text = (root / rel).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        text = text.replace(END_OF_TEXT, "")
        for chunk in _split_source(text, chunk_chars):
            if _EVAL_PHRASE_RE.search(chunk):
                continue
            doc = f"# {rel.as_posix()}\n{chunk}"
            yield doc
            total += len(doc)
            if total >= max_chars:
                return


# --------------------------------------------------------------------------------------------
# Token corpus
# --------------------------------------------------------------------------------------------


def tokenize_documents(docs: list[str]) -> list[np.ndarray]:
    """GPT-2 token ids (``uint16``) of each document, via the fast tokenizer's batch encoding."""
    backend = gpt2_tokenizer().backend_tokenizer
    out: list[np.ndarray] = []
    for start in range(0, len(docs), 256):  # small batches: Encoding objects are memory-hungry
        batch = [d.replace(END_OF_TEXT, "") for d in docs[start : start + 256]]
        out += [
            np.asarray(e.ids, dtype=np.uint16) for e in backend.encode_batch(batch, add_special_tokens=False)
        ]
    return out


@lru_cache(maxsize=2)
def _python_token_docs(max_chars: int) -> tuple[np.ndarray, ...]:
    return tuple(tokenize_documents(list(python_source_documents(max_chars=max_chars))))


def _generated_token_docs(kind: str, seed: int, budget: int, batch: int = 2048) -> list[np.ndarray]:
    stream = _doc_stream(kind, seed)
    docs: list[np.ndarray] = []
    total = 0
    while total < budget:
        for ids in tokenize_documents([next(stream) for _ in range(batch)]):
            docs.append(ids)
            total += len(ids) + 1
            if total >= budget:
                break
    return docs


def _python_docs_for_budget(seed: int, budget: int, max_chars: int) -> list[np.ndarray]:
    pool = _python_token_docs(max_chars)
    rng = np.random.default_rng([seed, 7])
    docs: list[np.ndarray] = []
    total = 0
    while total < budget:  # cycles over the standard library (new order each pass) if needed
        for i in rng.permutation(len(pool)):
            docs.append(pool[i])
            total += len(pool[i]) + 1
            if total >= budget:
                break
    return docs


def build_token_corpus(
    n_tokens: int,
    seed: int = 0,
    mix: dict[str, float] | None = None,
    python_max_chars: int = 10_000_000,
) -> np.ndarray:
    """A deterministic corpus of exactly ``n_tokens`` GPT-2 token ids (``np.uint16``).

    ``mix`` gives the share of tokens of each source (keys from ``SOURCES``; default ``DEFAULT_MIX``).
    Documents of all sources are shuffled together and each is preceded by the end-of-text token
    ``END_OF_TEXT_ID``, so documents are separated by EOS and the corpus starts with EOS; the last
    document is cut at ``n_tokens``. The Python source is reused (in a new random order) if the
    requested share exceeds the standard library's size.
    """
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = set(mix) - set(SOURCES)
    if unknown or not mix or min(mix.values()) < 0 or sum(mix.values()) <= 0:
        raise ValueError(f"mix must map some of {list(SOURCES)} to non-negative weights, got {mix}")
    if n_tokens <= 0:
        raise ValueError("n_tokens must be positive")
    weight_sum = sum(mix.values())
    docs: list[np.ndarray] = []
    for kind in sorted(mix):
        budget = int(np.ceil(n_tokens * mix[kind] / weight_sum))
        if budget == 0:
            continue
        if kind == "python":
            docs += _python_docs_for_budget(seed, budget, python_max_chars)
        else:
            docs += _generated_token_docs(kind, seed, budget)
    order = np.random.default_rng([seed, 11]).permutation(len(docs))
    eos = np.array([END_OF_TEXT_ID], dtype=np.uint16)
    pieces = []
    total = 0
    for i in order:
        pieces += [eos, docs[i]]
        total += 1 + len(docs[i])
        if total >= n_tokens:
            break
    tokens = np.concatenate(pieces)[:n_tokens]
    assert len(tokens) == n_tokens, "not enough documents (mix weights rounding)"
    return tokens
