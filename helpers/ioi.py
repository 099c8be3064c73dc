"""The IOI (Indirect Object Identification) prompt sets of the notebooks and of the shipped models' metrics.

A prompt names two people, then the repeated one (the subject) gives something to the other (the
indirect object), the right next name: "After John and Mary went to the store, Mary gave a bottle of
milk to" -> " John". Test prompts use templates, places and objects that the training text of the
course models never contains (tests/test_corpus.py checks this); validation prompts, used only to pick
a training checkpoint, use other templates with the training places and objects. Names are shared:
every name must be seen in training for its embedding to be learned. The training text is generated
by training/corpus.py from the names, places and objects defined here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

# --------------------------------------------------------------------------------------------
# Names: each is a single GPT-2 token when preceded by a space (" John" -> one id); the test
# suite checks this with the tokenizer. Names that are also common English words (Rose, Grace,
# Bill, Ray, ...) are left out to avoid ambiguity.
# --------------------------------------------------------------------------------------------

MALE_NAMES = [
    "John", "Tom", "James", "Dan", "Sid", "Martin", "David", "Michael", "Robert", "William",
    "Richard", "Thomas", "Charles", "Daniel", "Matthew", "Paul", "Steven", "Andrew", "Kevin",
    "Brian", "George", "Edward", "Peter", "Jack", "Ryan", "Jason", "Eric", "Adam", "Henry", "Sam",
    "Ben", "Alex", "Joe", "Mike", "Jim", "Tim", "Greg", "Scott", "Luke", "Simon", "Harry", "Oliver",
    "Chris", "Jacob", "Tony", "Carl", "Roger", "Victor", "Philip", "Arthur", "Oscar", "Leo",
    "Louis", "Ian", "Neil", "Patrick", "Kyle", "Sean", "Aaron", "Nathan",
]  # fmt: skip
FEMALE_NAMES = [
    "Mary", "Claire", "Amy", "Sarah", "Emma", "Anna", "Lisa", "Laura", "Kate", "Jane", "Susan",
    "Linda", "Karen", "Nancy", "Betty", "Helen", "Sandra", "Donna", "Carol", "Sharon", "Michelle",
    "Emily", "Jessica", "Rachel", "Rebecca", "Alice", "Lucy", "Julia", "Sophie", "Ellen", "Amanda",
    "Melissa", "Maria", "Diana", "Anne", "Jennifer", "Elizabeth", "Barbara", "Megan", "Hannah",
    "Olivia", "Chloe", "Katie", "Jenny", "Jill", "Eva", "Nina", "Sara", "Lily", "Molly", "Heather",
    "Judy", "Beth", "Kelly", "Nicole", "Natalie", "Julie", "Monica", "Wendy", "Fiona",
]  # fmt: skip
#: Every name, in training text and in prompts alike (the prompts test generalisation over templates,
#: places and objects, not over names).
NAMES = MALE_NAMES + FEMALE_NAMES

# --------------------------------------------------------------------------------------------
# Places and objects. Places are bare nouns used as "the {place}"; objects carry their article.
# Training and evaluation sets are disjoint, and no evaluation string ("the store", "the bag",
# "a bottle of milk", ...) is a substring of any training text (checked by the tests).
# --------------------------------------------------------------------------------------------

TRAIN_PLACES = [
    "market", "school", "garden", "station", "office", "farm", "river", "lake", "forest",
    "hospital", "restaurant", "cafe", "bakery", "church", "harbour", "airport", "theatre",
    "castle", "hotel", "gym", "village", "square", "playground", "hill", "bridge", "bus stop",
    "post office", "campsite", "stadium", "pier", "island", "circus", "fair", "bank", "factory",
]  # fmt: skip
EVAL_PLACES = ["store", "shops", "park", "zoo", "cinema", "museum", "beach", "library"]

TRAIN_OBJECTS = [
    "a book", "a letter", "the keys", "a cup of tea", "a glass of milk", "a bottle of water",
    "a paper bag", "a tennis ball", "a red umbrella", "an old camera", "a silver necklace",
    "a cheese sandwich", "a cold drink", "some apple juice", "a flower", "a pencil", "the map",
    "a box of chocolates", "a toy car", "a hat", "a blue scarf", "a present", "a ticket",
    "a newspaper", "a cookie", "an orange", "a banana", "a coin", "a photo", "a small gift",
    "a candle", "a basket of eggs", "a piece of cake", "a notebook", "a watch", "a spoon",
    "a jacket", "a green kite", "a pair of gloves", "a bunch of grapes",
]  # fmt: skip
EVAL_OBJECTS = [
    "a bottle of milk", "the bag", "the ball", "an apple", "a drink", "a sandwich", "the camera",
    "a necklace", "the umbrella", "a kite",
]  # fmt: skip

# --------------------------------------------------------------------------------------------
# Prompt templates. {A} and {B} are the two names in order of introduction, {S} is the subject
# (repeated name), {IO} the indirect object, {P} a place, {O} an object.
# --------------------------------------------------------------------------------------------

#: Evaluation templates: none of them, nor the part before the subject, occurs in training.
#: All prompts end with " to"; the correct next token is the indirect object.
EVAL_TEMPLATES = [
    "After {A} and {B} went to the {P}, {S} gave {O} to",
    "When {A} and {B} went to the {P}, {S} gave {O} to",
    "Then, {A} and {B} were working at the {P}. {S} decided to give {O} to",
    "While {A} and {B} were relaxing at the {P}, {S} offered {O} to",
    "Friends {A} and {B} found {O} at the {P}. {S} gave it to",
    "Yesterday {A} and {B} had a lot of fun at the {P}, and {S} brought {O} to",
    "On the way to the {P}, {A} and {B} talked for a while. Then {S} passed {O} to",
    "The {P} was quiet when {A} and {B} arrived. Later, {S} handed {O} to",
]

#: Validation templates, for choosing among training checkpoints without looking at the test prompts:
#: disjoint from the training and the evaluation templates, filled with training places and objects.
VALIDATION_TEMPLATES = [
    "Before {A} and {B} went home from the {P}, {S} gave {O} to",
    "Then {A} and {B} spent the day at the {P}. In the end, {S} handed {O} to",
    "One morning {A} and {B} walked to the {P}, and there {S} sent {O} to",
    "After {A} and {B} had dinner at the {P}, {S} lent {O} to",
    "Every day {A} and {B} went to the {P}. Once, {S} showed {O} to",
    "When {A} and {B} came out of the {P}, {S} threw {O} to",
    "After a while, {A} and {B} sat down at the {P}. Suddenly {S} passed {O} to",
    "It was late, and {A} and {B} were at the {P}. Then {S} brought {O} to",
]

FAMOUS_PROMPT = "After John and Mary went to the store, Mary gave a bottle of milk to"
FAMOUS_CORRUPTED = "After John and Mary went to the store, John gave a bottle of milk to"
FAMOUS_ANSWER = " John"
FAMOUS_WRONG = " Mary"


@dataclass(frozen=True)
class IOIPrompt:
    """One IOI evaluation prompt. ``io`` and ``subject`` are single tokens with a leading space."""

    prompt: str  # ends right before the answer, e.g. "... gave a drink to"
    corrupted: str  # the same prompt with the second mention of the subject replaced by the IO name
    io: str  # correct answer, e.g. " John"
    subject: str  # repeated name, incorrect answer, e.g. " Mary"
    order: str  # "ABB" (IO introduced first) or "BAB" (subject introduced first)
    template: str
    place: str
    obj: str

    @property
    def answers(self) -> tuple[str, str]:
        """(correct, incorrect) answer strings."""
        return (self.io, self.subject)


def _make_prompt(template: str, io: str, subject: str, order: str, place: str, obj: str) -> IOIPrompt:
    a, b = (io, subject) if order == "ABB" else (subject, io)
    return IOIPrompt(
        prompt=template.format(A=a, B=b, S=subject, P=place, O=obj),
        corrupted=template.format(A=a, B=b, S=io, P=place, O=obj),
        io=" " + io,
        subject=" " + subject,
        order=order,
        template=template,
        place=place,
        obj=obj,
    )


def ioi_eval_prompts(n: int = 100, seed: int = 0, split: str = "test") -> list[IOIPrompt]:
    """``n`` IOI prompts from templates never seen in training.

    ``split="test"`` (the reported metrics): evaluation-only templates, places and objects.
    ``split="validation"`` (to choose a checkpoint): the validation templates, with training places
    and objects, so that the choice never looks at a test piece.
    Prompt ``i`` uses template ``(i // 2) % len(templates)`` and order ABB for even ``i``, BAB for
    odd ``i``, so templates and orders are balanced; names, place and object are random.
    """
    splits = {"test": (EVAL_TEMPLATES, EVAL_PLACES, EVAL_OBJECTS),
              "validation": (VALIDATION_TEMPLATES, TRAIN_PLACES, TRAIN_OBJECTS)}
    if split not in splits:
        raise ValueError(f"split={split!r}: use 'test' (reported metrics) or 'validation' (checkpoint choice).")
    templates, places, objects = splits[split]
    # The seed strings name the module these sets first lived in: changing them would change the prompts.
    rng = random.Random(f"helpers.corpus:eval:{seed}" if split == "test" else f"helpers.corpus:{split}:{seed}")
    prompts = []
    for i in range(n):
        template = templates[(i // 2) % len(templates)]
        io, subject = rng.sample(NAMES, 2)
        order = "ABB" if i % 2 == 0 else "BAB"
        prompts.append(_make_prompt(template, io, subject, order, rng.choice(places), rng.choice(objects)))
    return prompts


def famous_ioi_prompt() -> IOIPrompt:
    """The classic "After John and Mary went to the store, Mary gave a bottle of milk to" -> " John"."""
    record = _make_prompt(EVAL_TEMPLATES[0], "John", "Mary", "ABB", "store", "a bottle of milk")
    assert record.prompt == FAMOUS_PROMPT and record.corrupted == FAMOUS_CORRUPTED
    return record


class PatchingBatch(NamedTuple):
    """A small fixed IOI batch for activation patching (unpacks as ``prompts, answers, corrupted``)."""

    prompts: list[str]
    answers: list[tuple[str, str]]  # [n, 2]: (correct, incorrect)
    corrupted_prompts: list[str]  # prompt i with its S2 name swapped = the partner prompt of i


_PATCHING_SPECS = [
    # (template, first name, second name, place, object), as in the TransformerLens demo
    (EVAL_TEMPLATES[1], "John", "Mary", "shops", "the bag"),
    (EVAL_TEMPLATES[1], "Tom", "James", "park", "the ball"),
    (EVAL_TEMPLATES[1], "Dan", "Sid", "shops", "an apple"),
    (EVAL_TEMPLATES[0], "Martin", "Amy", "park", "a drink"),
]


def ioi_prompt_pairs_for_patching() -> PatchingBatch:
    """8 IOI prompts, each pair of names used twice with the subject swapped (both name orders).

    Prompt ``2k`` has the first-introduced name as subject (answer: the second name) and prompt
    ``2k+1`` the second one (answer: the first name), so prompt ``2k+1`` is the corrupted version of
    prompt ``2k`` and vice versa. All prompts have the same number of GPT-2 tokens (tested).
    """
    prompts, answers, corrupted = [], [], []
    for template, first, second, place, obj in _PATCHING_SPECS:
        pair = [
            _make_prompt(template, io=second, subject=first, order="BAB", place=place, obj=obj),
            _make_prompt(template, io=first, subject=second, order="ABB", place=place, obj=obj),
        ]
        for record in pair:
            prompts.append(record.prompt)
            answers.append(record.answers)
            corrupted.append(record.corrupted)
    return PatchingBatch(prompts, answers, corrupted)
