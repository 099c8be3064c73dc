"""The training text of the course's language models: deterministic, generated offline.

GPT-2 small cannot be downloaded where the course is built, so the course trains its own small
language models on a corpus made here, offline, from these sources:

* ``"ioi"``: short synthetic stories in which two people are introduced and one of them then
  gives something to the other ("... Kate handed a red umbrella to Paul."), mixed with other
  sentences about named people (lists, dialogue, one person doing several things, three people,
  reciprocal actions) so that "the name that comes next" is not always the indirect object;
* ``"narrative"``: simple synthetic English narrative sentences (animals, weather, places, people);
* ``"narrative_zipf"`` and ``"ioi_zipf"``: paragraphs about people and more varied IOI-like stories, whose
  words and 376 first names follow a Zipf law (function words far more frequent than content words, " John"
  more frequent than " Mary"), with names that open sentences (no leading space);
* ``"ioi_spread"``: the ``"ioi_zipf"`` stories with introductions that name the two people in different
  clauses or sentences, words apart (" A was at the park when B arrived."), and more ways to act towards
  the other person, so that the IOI structure does not depend on "A and B" being side by side;
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
from bisect import bisect
from collections.abc import Iterator
from functools import lru_cache, partial
from itertools import accumulate
from pathlib import Path

import numpy as np

from helpers import ioi
from helpers.ioi import EVAL_OBJECTS, EVAL_PLACES, NAMES, TRAIN_OBJECTS, TRAIN_PLACES
from helpers.tokenizer import END_OF_TEXT, END_OF_TEXT_ID, gpt2_tokenizer

DEFAULT_MIX = {"ioi": 0.5, "python": 0.25, "narrative": 0.25}
SOURCES = ("ioi", "narrative", "narrative_zipf", "ioi_zipf", "ioi_spread", "python")

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
#: More connectives (the Zipf stories' links start from them).
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
    "person": _PEOPLE,
    "animal": _ANIMALS,
    "adj": _ADJS,
    "feeling": _FEELINGS,
    "weather": _WEATHER,
    "time": _TIMES,
    "colour": _COLOURS,
    "food": _FOODS,
    "activity": _ACTIVITIES,
    "thing": _THINGS,
    "F": _FURNITURE,
    "place": TRAIN_PLACES,
    "P": TRAIN_PLACES,
    "O": TRAIN_OBJECTS,
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


def _ioi_episode(rng: random.Random) -> str:
    """Two people introduced, then one (the subject) acts towards the other (the indirect object)."""
    a, b = rng.sample(NAMES, 2)
    s, io = (b, a) if rng.random() < 0.5 else (a, b)  # ABB or BAB
    place, obj = rng.choice(TRAIN_PLACES), rng.choice(TRAIN_OBJECTS)
    intro = rng.choice(TRAIN_INTROS).format(A=a, B=b, P=place)
    action = rng.choice(TRAIN_ACTIONS).format(S=s, IO=io, O=obj)
    parts = [intro, action] if intro.endswith(",") else [intro, rng.choice(CONNECTIVES) + action]
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


def _ioi_document(rng: random.Random) -> str:
    """One training document: 1-3 IOI episodes mixed with other name sentences and narrative."""
    pieces = [_ioi_episode(rng) for _ in range(rng.choice([1, 1, 2, 2, 3]))]
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
    zipf = {
        "narrative_zipf": _zipf_narrative_document,
        "ioi_zipf": _zipf_ioi_document,
        "ioi_spread": partial(_zipf_ioi_document, spread=True),
    }
    if kind in zipf:
        yield from _zipf_documents(zipf[kind], rng)
    make = {"ioi": _ioi_document, "narrative": _narrative_document}[kind]
    while True:
        yield make(rng)


def ioi_training_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` training documents (a few sentences each) containing IOI structure.

    Each document has one to three IOI episodes (two names introduced, then the repeated name gives
    or says something to the other, which is the next name), in both orders (ABB and BAB), mixed
    with non-IOI sentences about named people and simple narrative sentences.
    """
    stream = _doc_stream("ioi", seed)
    return [next(stream) for _ in range(n)]


def narrative_documents(n: int, seed: int = 0) -> list[str]:
    """``n`` short synthetic narrative documents (3 to 7 simple sentences)."""
    stream = _doc_stream("narrative", seed)
    return [next(stream) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Zipf-distributed text: the sources "narrative_zipf" and "ioi_zipf"
# --------------------------------------------------------------------------------------------
# Every word list below is in rank order: its k-th item is drawn with a weight 1 / (k + ZIPF_OFFSET), so a few
# words are common and most are rare, as in natural text. Function words come from the sentence frames, which
# every sentence uses, so they are far more frequent than any content word.

ZIPF_OFFSET = 2.7

#: Common first names that are one GPT-2 token after a space (tested), most frequent first. A superset of
#: helpers.ioi.NAMES; names that are also common words (Rose, Will, June, ...) are left out. Mary comes fifth of
#: the women, so that " John" is about 3.4 times as frequent as " Mary" (a ratio like that of English text).
MALE_FIRST_NAMES = """John James Michael David Robert William Richard Thomas Charles Joseph Daniel Paul Mark George
Steven Andrew Peter Kevin Brian Edward Jack Tom Chris Matthew Ryan Jason Eric Adam Henry Sam Ben Alex Joe Mike Jim
Tim Greg Scott Luke Simon Harry Oliver Jacob Tony Carl Roger Victor Philip Arthur Oscar Leo Louis Ian Neil Patrick
Kyle Sean Aaron Nathan Dan Sid Martin Anthony Donald Kenneth Joshua Timothy Jeffrey Gary Ronald Stephen Larry
Justin Frank Raymond Gregory Benjamin Samuel Jonathan Jerry Dennis Walter Harold Douglas Jose Ethan Noah Jeremy
Christian Keith Roy Lawrence Albert Austin Jesse Bryan Bruce Billy Ralph Eugene Russell Wayne Alan Juan Randy Howard
Vincent Bobby Dylan Johnny Phillip Craig Derek Shawn Todd Curtis Marcus Stanley Travis Jeff Allen Nick Dave Steve
Bob Ted Fred Ken Ron Rick Andy Matt Pete Jake Tyler Evan Owen Gavin Cody Colin Trevor Brad Shane Lucas Mason Logan
Hunter Connor Caleb Isaac Gabriel Elijah Hugh Felix Hans Karl Otto Igor Ivan Omar Ahmed Hassan Carlos Pedro Luis
Miguel Diego Marco Mario Pierre Jacques Francis Edgar Gordon Stuart Graham Duncan Malcolm Angus Clark Bernard
Leonard Norman Herbert Vernon Warren Morris Lewis Rodney Barry Terry Jerome Leon Nelson Clyde Floyd Lloyd Harvey
Calvin Wesley Milton Franklin Ernest Troy Eddie Danny Tommy Jimmy Kenny Benny Sammy Charlie Archie Freddie Teddy
Toby Theo Phil Doug Marty""".split()
FEMALE_FIRST_NAMES = """Sarah Emma Anna Lisa Mary Laura Kate Jane Susan Linda Karen Nancy Betty Helen Sandra Donna
Carol Sharon Michelle Emily Jessica Rachel Rebecca Alice Lucy Julia Sophie Ellen Amanda Melissa Maria Diana Anne
Jennifer Elizabeth Barbara Megan Hannah Olivia Chloe Katie Jenny Jill Eva Nina Sara Lily Molly Heather Judy Beth
Kelly Nicole Natalie Julie Monica Wendy Fiona Claire Amy Patricia Margaret Dorothy Ruth Deborah Stephanie Cynthia
Kathleen Angela Shirley Brenda Pamela Catherine Christine Samantha Janet Carolyn Virginia Martha Frances Ann Joyce
Diane Cheryl Kathryn Teresa Gloria Judith Andrea Katherine Joan Ashley Kimberly Lauren Christina Victoria Tina
Sophia Mia Madison Zoe Leah Audrey Ellie Bella Stella Clara Nora Vera Louise Marie Sylvia Rita Paula Tracy Stacy
Meg Liz Becky Cathy Kathy Peggy Sally Annie Maggie Jessie Amelia Charlotte Esther Naomi Elena Carmen Lucia Rosa Ana
Heidi Natasha Sonia Mei Lena Caroline Helena Harriet Florence Eleanor Lydia Miranda Vanessa Veronica Erica Erin Kara
Tara Dana Gina Lori""".split()
#: Both lists merged, a man and a woman in turn: the rank order of the names.
FIRST_NAMES = [n for pair in zip(MALE_FIRST_NAMES, FEMALE_FIRST_NAMES, strict=False) for n in pair]
FIRST_NAMES += MALE_FIRST_NAMES[len(FEMALE_FIRST_NAMES) :]
_FEMALE = frozenset(FEMALE_FIRST_NAMES)

ZIPF_PLACES = (
    TRAIN_PLACES
    + """kitchen garage city town classroom clinic shore mountains studio gallery pool mall
canteen barn field meadow woods valley cottage tower palace temple attic cellar yard courtyard hall arcade""".split()
)
ZIPF_OBJECTS = TRAIN_OBJECTS + [
    "a pen",
    "a blanket",
    "a bowl of soup",
    "a cup of coffee",
    "a mug",
    "a plate of cookies",
    "a comb",
    "a mirror",
    "a doll",
    "a puzzle",
    "a wallet",
    "a guitar",
    "a sweater",
    "a lamp",
    "a toy boat",
    "a ring",
    "a bracelet",
    "a postcard",
    "a magazine",
    "a poem",
    "a recipe",
    "a bunch of flowers",
    "a loaf of bread",
    "a jar of honey",
    "a pair of shoes",
    "a card",
    "an envelope",
    "an old coat",
    "a bicycle",
    "a small radio",
]
ZIPF_NOUNS = """door car book phone dog window letter box bottle cup key hat coat bike chair desk clock lamp
cat horse bird boat truck shirt dress fence gate rope basket pencil blanket shelf engine bell flag wheel pocket
button ladder candle mirror feather puzzle whistle carpet pillow drum wagon lantern compass violin saddle jar
bucket brush hammer kettle plate bowl spoon fork""".split()
ZIPF_ADJECTIVES = """old new little big long small large bright dark cold warm clean heavy empty wet soft red green
blue yellow brown white black tiny huge strange shiny rusty dusty wooden golden silver broken narrow wide
ancient noisy quiet""".split()
ZIPF_VERBS = """saw took found opened bought watched closed carried held moved cleaned painted fixed lost wanted
liked needed checked washed dropped picked pushed pulled kept missed noticed followed filled hid packed shared
""".split()
ZIPF_INTRANSITIVES = """laughed|smiled|waited|walked|stopped|slept|listened|nodded|left|arrived|stayed|sighed|
looked around|sat down|stood up|ran away|came back|went home|went inside|fell asleep|woke up|kept walking|
turned around""".replace("\n", "").split("|")
ZIPF_ADVERBS = """slowly quickly quietly again suddenly carefully finally happily soon loudly calmly proudly sadly
gently""".split()
ZIPF_TIMES = """That morning|Later|The next day|In the afternoon|That night|After dinner|On Sunday|At first|
A moment later|By noon|On Friday|Last spring|Early the next morning|Some time later|At dawn|That autumn
""".replace("\n", "").split("|")
ZIPF_SPEECH = """Come here|I am ready|Look at this|Thank you|Where are you going|I know|Let us go home|
That is a good idea|Are you hungry|I can help|It is late|Wait for me|What happened|I like it|Not today|See you tomorrow
|We should hurry|It is over there|I am tired|Good morning""".replace("\n", "").split("|")
ZIPF_SAID = ["said", "asked", "replied", "answered", "called", "whispered", "shouted"]

#: Sentence frames of the narrative. {A} (its pronouns: {he} {his} {him}, capitalised {He} {His}) and {B} are
#: characters; {np} a noun phrase, {noun} {adj} {vt} {vi} {adv} {place} {obj} {food} {feeling} {weather}
#: {line} {said} {Time} words of the lists above.
ZIPF_FRAMES = [
    "{A} {vt} {np}.",
    "{He} {vt} {np}.",
    "{A} {vi}.",
    "{He} {vi} {adv}.",
    "{A} was {feeling}.",
    "The {noun} was {adj}.",
    "It was a {adj} {noun}.",
    "{A} and {B} {vi}.",
    "{Time}, {A} {vt} {np}.",
    "{A} {vt} {np} and {vi}.",
    "{A} went to the {place}.",
    "{He} looked at the {adj} {noun}.",
    "There was {np} on the {noun}.",
    '"{line}," {said} {A}.',
    '"{line}, {B}," {said} {A}.',
    "{A} told {B} about the {noun}.",
    "{His} {noun} was {adj}.",
    "{A} gave {B} {obj}.",
    "{He} wanted to see the {place}.",
    "{A} and {B} talked about the {noun}.",
    "It was {weather} in the {place}.",
    "{A} {vt} {np} because {he} was {feeling}.",
    "When {A} {vi}, {B} {vi}.",
    "{B} asked {A} where the {noun} was.",
    "{A} could not find {his} {noun}.",
    "{A} ate {food} with {B}.",
    "{He} had {np} in {his} hand.",
    "{A} came back from the {place} after lunch.",
    "{A} and {B} were both {feeling}.",
    "There was {np} near the {place}.",
    "Every {daytime}, {A} {vi}.",
    "{A} {vt} {np} every day.",
    "{A} was talking to {B}.",
    "{A} was sitting on the {noun}.",
    "Before dinner, {A} {vt} {np}.",
    "Late that {daytime}, {he} {vi}.",
    "A {adj} bird flew over the {place}.",
    "{A} thought about the {noun} for a long time.",
    "The {adj} {noun} {vi}.",
    "{A} {vt} it {adv}.",
    "{B} was not at the {place}.",
    "{A} did not like the {noun}.",
    "Then {he} {vi}.",
    "{A} met {B} in the {place}.",
    "{A} {vt} {np} for {B}.",
    "Everyone {vi}.",
    "{A} said that the {noun} was {adj}.",
    "{A} walked over to the {place}.",
    "{A} asked where {B} was.",
]
#: The first sentence of a paragraph: about half of them begin with a name (which then has no leading space).
ZIPF_PARAGRAPH_OPENERS = [
    "{A} {vt} {np}.",
    "{A} was {feeling} that day.",
    "{A} lived near the {place}.",
    "{Time}, {A} {vi}.",
    "{A} and {B} {vi}.",
    "{A} had {np}.",
    "It was a {adj} {noun}.",
    '"{B}!" {said} {A}.',
    "{A} woke up early.",
    "The {place} was {adj}.",
    "There was {np} near the {place}.",
    "Before dinner, {A} {vt} {np}.",
    "Late that {daytime}, {A} {vi}.",
]
#: IOI-like stories: ways to bring two people together ({A} then {B}), ...
ZIPF_IOI_INTROS = [
    "{A} and {B} went to the {P}.",
    "{A} was at the {P} with {B}.",
    "{A} met {B} near the {P}.",
    "{A} and {B} spent the {daytime} at the {P}.",
    "{A} invited {B} to the {P}.",
    "{A} and {B} were friends.",
    "{A} and {B} worked together at the {P}.",
    "{A} visited {B} at the {P}.",
    "{A} was waiting for {B} at the {P}.",
    "{A} and {B} sat on a bench near the {P}.",
    "{A} drove {B} to the {P}.",
    "{A} and {B} walked to the {P}.",
    "{A} called {B}, and they met at the {P}.",
    "{A} and {B} were at the {P} again.",
    "{A} joined {B} at the {P}.",
    "{A} and {B} got to the {P} early.",
    "{A} and {B} ran to the {P}.",
    "{A} and {B} came to the {P} by bus.",
    "{A} and {B} stayed at the {P} for an hour.",
    "{A} saw {B} at the {P}.",
]
#: ``"ioi_spread"`` only: introductions that name {A} and {B} in different clauses or sentences, words apart.
ZIPF_IOI_SPREAD_INTROS = [
    "{A} was at the {P} when {B} arrived.",
    "{A} got to the {P} first, and {B} arrived soon after.",
    "{A}, who was {feeling}, met {B} at the {P}.",
    "{A} went to the {P}. {B} was already there.",
    "{A} {vt} {np} at the {P}, and {B} {vi}.",
    "{A} lived near the {P}, and {B} lived across the street.",
    "{A} stayed at the {P} all {daytime}. Later, {B} joined {him}.",
    "{A} was {feeling}, so {B} came to the {P}.",
    "{A} had {np} at the {P}, and {B} wanted to see it.",
    "When {A} reached the {P}, {B} was waiting outside.",
    "{A} {vi} at the {P} for a while, and then {B} came over.",
    "{A} sat near the {P}; {B} sat across from {him}.",
    "{A} was {feeling} after the trip to the {P}, but {B} was not.",
    "{A} {vt} {np}. At the {P}, {B} {vi}.",
    "{A} looked for the {noun} at the {P} until {B} arrived.",
    "{A} went out to the {P}, and {B} followed.",
    "{A} waited at the {P}. After a long time, {B} came.",
    "{A} called from the {P}, and {B} answered.",
    "{A} was already at the {P}; {B} came by bus a little later.",
    "{A}, {feeling} and quiet, saw {B} at the {P}.",
]
#: ``"ioi_spread"`` only: more ways for {S} to act towards {IO}.
ZIPF_IOI_SPREAD_ACTIONS = [
    "{S} passed {O} along to {IO}.",
    "{S} lent {O} to {IO}.",
    "{S} brought {O} over to {IO}.",
    "{S} gave {O} back to {IO}.",
    "{S} offered {O} to {IO}.",
    "{S} wanted to give {O} to {IO}.",
    "{He} quietly gave {O} to {IO}.",
    "{S} finally handed {O} to {IO}.",
    "{S} left {O} next to {IO}.",
    "{S} showed {O} to {IO}.",
    "{S} threw {O} over to {IO}.",
    "{S} said thank you to {IO}.",
]
#: ... ways to join the introduction and the action ...
ZIPF_IOI_LINKS = VARIED_CONNECTIVES + [
    "When it was time to go, ",
    "Before they left, ",
    "A few minutes later, ",
    "After some time, ",
    "Meanwhile, ",
]
#: ... and what the subject {S} ({He}: its pronoun) did for the indirect object {IO}.
ZIPF_IOI_ACTIONS = TRAIN_ACTIONS + [
    "{S} carried {O} to {IO}.",
    "{S} delivered {O} to {IO}.",
    "{S} sent {IO} {O}.",
    "{S} kindly gave {O} to {IO}.",
    "{S} quickly passed {O} to {IO}.",
    "{S} decided to lend {O} to {IO}.",
    "{S} promised {O} to {IO}.",
    "{S} left {O} for {IO}.",
    "{S} explained the plan to {IO}.",
    "{S} whispered something to {IO}.",
    "{S} waved goodbye to {IO}.",
    "{S} then gave {O} to {IO}.",
    "{He} gave {O} to {IO}.",
    "{He} handed {O} to {IO}.",
    "{S} got {O} for {IO}.",
    "{S} read {O} to {IO}.",
    "{S} mailed {O} to {IO}.",
    "{S} slid {O} across to {IO}.",
]
ZIPF_IOI_FILLERS = [
    "It was {weather} outside.",
    "They talked for a while.",
    "{A} was {feeling}.",
    "{B} looked at the {noun}.",
    "The {P} was {adj}.",
    "They ate {food}.",
    "{A} and {B} laughed.",
    "Nobody else was there.",
    "{B} had {np}.",
    "It was {adj} and {adj2}.",
]
_PRONOUNS = {False: ("he", "his", "him"), True: ("she", "her", "her")}
_DAYTIMES = ["day", "morning", "afternoon", "evening", "weekend"]


class _Zipf:
    """Draws the item of rank k (from 1) of ``items`` with a weight 1 / (k + ZIPF_OFFSET)."""

    def __init__(self, items: list[str]):
        self.items = list(items)
        self.cumulative = list(accumulate(1 / (k + ZIPF_OFFSET) for k in range(1, len(items) + 1)))

    def __call__(self, rng: random.Random) -> str:
        return self.items[bisect(self.cumulative, rng.random() * self.cumulative[-1])]


_ZIPF_SLOTS = {
    "noun": _Zipf(ZIPF_NOUNS),
    "adj": _Zipf(ZIPF_ADJECTIVES),
    "adj2": _Zipf(ZIPF_ADJECTIVES),
    "vt": _Zipf(ZIPF_VERBS),
    "vi": _Zipf(ZIPF_INTRANSITIVES),
    "adv": _Zipf(ZIPF_ADVERBS),
    "Time": _Zipf(ZIPF_TIMES),
    "line": _Zipf(ZIPF_SPEECH),
    "said": _Zipf(ZIPF_SAID),
    "place": _Zipf(ZIPF_PLACES),
    "P": _Zipf(ZIPF_PLACES),
    "obj": _Zipf(ZIPF_OBJECTS),
    "O": _Zipf(ZIPF_OBJECTS),
    "food": _Zipf(_FOODS),
    "feeling": _Zipf(_FEELINGS),
    "weather": _Zipf(_WEATHER),
    "daytime": _Zipf(_DAYTIMES),
    "frame": _Zipf(ZIPF_FRAMES),
    "opener": _Zipf(ZIPF_PARAGRAPH_OPENERS),
    "name": _Zipf(FIRST_NAMES),
    "intro": _Zipf(ZIPF_IOI_INTROS),
    "link": _Zipf(ZIPF_IOI_LINKS),
    "action": _Zipf(ZIPF_IOI_ACTIONS),
    "filler": _Zipf(ZIPF_IOI_FILLERS),
    "spread_intro": _Zipf(ZIPF_IOI_SPREAD_INTROS),
    "spread_action": _Zipf(ZIPF_IOI_ACTIONS + ZIPF_IOI_SPREAD_ACTIONS),
    "det": _Zipf(["the", "a", "his", "this", "that", "one", "another"]),
}


def _noun_phrase(rng: random.Random, his: str) -> str:
    det = _ZIPF_SLOTS["det"](rng)
    words = [_ZIPF_SLOTS["adj"](rng)] if rng.random() < 0.4 else []
    return " ".join([his if det == "his" else det, *words, _ZIPF_SLOTS["noun"](rng)])


def _zipf_fill(rng: random.Random, frame: str, a: str, b: str, **known: str) -> str:
    """Fill a frame: {A} {B} are the names ``a`` and ``b``, {he} {his} {him} the pronouns of ``a``."""
    he, his, him = _PRONOUNS[a in _FEMALE]
    values = {"A": a, "B": b, "he": he, "his": his, "him": him, "He": _cap(he), "His": _cap(his), **known}

    def pick(match: re.Match) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        return _noun_phrase(rng, his) if key == "np" else _ZIPF_SLOTS[key](rng)

    return _AN_RE.sub(r"\1n \2", re.sub(r"\{(\w+)\}", pick, frame))


_AN_RE = re.compile(r"\b([Aa]) ([aeio])")


def _characters(rng: random.Random, n: int) -> list[str]:
    """``n`` different names, drawn by frequency."""
    names: list[str] = []
    while len(names) < n:
        name = _ZIPF_SLOTS["name"](rng)
        if name not in names:
            names.append(name)
    return names


def _zipf_narrative_document(rng: random.Random) -> str:
    """Paragraphs (separated by a blank line) of sentences about two or three people, often opening on a name."""
    people = _characters(rng, 3)
    paragraphs = []
    for _ in range(rng.choice([1, 2, 2, 3, 4])):
        a, b = rng.sample(people, 2)
        sentences = [_zipf_fill(rng, _ZIPF_SLOTS["opener"](rng), a, b)]
        for _ in range(rng.randint(1, 5)):
            a, b = rng.sample(people, 2) if rng.random() < 0.3 else (a, b)
            sentences.append(_zipf_fill(rng, _ZIPF_SLOTS["frame"](rng), a, b))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def _zipf_ioi_episode(rng: random.Random, spread: bool = False) -> str:
    """Two people brought together, maybe a sentence or two, then one of them acts towards the other.

    ``spread``: the introduction names them in different clauses (source ``"ioi_spread"``).
    """
    a, b = _characters(rng, 2)
    s, io = (b, a) if rng.random() < 0.5 else (a, b)
    place = _ZIPF_SLOTS["P"](rng)
    intro = _zipf_fill(rng, _ZIPF_SLOTS["spread_intro" if spread else "intro"](rng), a, b, P=place)
    if rng.random() < 0.3:
        intro = _ZIPF_SLOTS["Time"](rng) + ", " + intro
    parts = [intro] + [
        _zipf_fill(rng, _ZIPF_SLOTS["filler"](rng), a, b, P=place) for _ in range(rng.choice([0, 0, 1, 1, 2]))
    ]
    action = _zipf_fill(
        rng, _ZIPF_SLOTS["spread_action" if spread else "action"](rng), s, io, S=s, IO=io, O=_ZIPF_SLOTS["O"](rng)
    )
    lowered = action if action.startswith(s) else action[0].lower() + action[1:]
    if len(parts) == 1 and rng.random() < 0.25:  # one sentence: "A and B went to the P, then S gave O to IO."
        parts = [intro[:-1] + rng.choice([", then", ", and", ", so"]) + " " + lowered]
    else:
        link = _ZIPF_SLOTS["link"](rng)
        parts.append(link + (lowered if link else action))
    if rng.random() < 0.3:
        parts.append(FOLLOW_UPS[rng.randrange(len(FOLLOW_UPS))].format(S=s, IO=io))
    return " ".join(parts)


def _zipf_ioi_document(rng: random.Random, spread: bool = False) -> str:
    """IOI-like episodes mixed with other sentences about named people; a document may open on a name."""
    pieces = [_zipf_ioi_episode(rng, spread) for _ in range(rng.choice([1, 1, 2, 2, 3]))]
    for _ in range(rng.choice([0, 1, 1, 2])):
        a, b, c, d = _characters(rng, 4)
        episode = _fill(rng, rng.choice(_NAME_EPISODES), A=a, B=b, C=c, D=d, S=rng.choice([a, b]))
        pieces.insert(rng.randrange(len(pieces) + 1), episode)
    return " ".join(pieces)


def _template_prefix_regexes(templates: list[str]) -> list[re.Pattern]:
    """Regexes of any filling of the part of each template before the subject's second mention."""
    slots = {"A": r"[A-Z][a-z]+", "B": r"[A-Z][a-z]+", "P": r"[\w' ]+?", "O": r"[\w' ]+?"}
    patterns = []
    for template in templates:
        prefix = template[: template.index("{S}")]
        patterns.append(
            re.compile(
                "".join(
                    re.escape(literal) + (slots[slot] if slot else "")
                    for literal, slot in re.findall(r"([^{]*)(?:\{(\w+)\})?", prefix)
                )
            )
        )
    return patterns


# The Zipf sources drop any document that contains an evaluation piece (test, validation or out-of-structure):
# a place or object, even inside a longer word, or the beginning of a template up to its subject.
_EVAL_PIECES_RE = re.compile(
    "|".join(
        re.escape(piece)
        for piece in [f"the {p}" for p in EVAL_PLACES + ioi.OUT_OF_STRUCTURE_PLACES]
        + EVAL_OBJECTS
        + ioi.OUT_OF_STRUCTURE_OBJECTS
    ),
    re.IGNORECASE,
)
_EVAL_PREFIX_RES = _template_prefix_regexes([t for split in ioi.SPLITS.values() for t in split[0]])


def _free_of_eval_pieces(text: str) -> bool:
    return not _EVAL_PIECES_RE.search(text) and not any(p.search(text) for p in _EVAL_PREFIX_RES)


def _zipf_documents(make, rng: random.Random) -> Iterator[str]:
    while True:
        doc = make(rng)
        if _free_of_eval_pieces(doc):
            yield doc


def zipf_documents(n: int, seed: int = 0, kind: str = "narrative_zipf") -> list[str]:
    """``n`` documents of the source ``"narrative_zipf"``, ``"ioi_zipf"`` or ``"ioi_spread"``."""
    stream = _doc_stream(kind, seed)
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
    """GPT-2 token ids (``uint16``) of each document, via the fast tokenizer's batch encoding.

    The backend is shared with ``transformers``, whose calls with ``padding=True`` or ``truncation=True`` leave
    padding and truncation switched on in it: switch them off, or the documents would come back padded to a
    common length (the corpus would then depend on what was tokenized before)."""
    backend = gpt2_tokenizer().backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    out: list[np.ndarray] = []
    for start in range(0, len(docs), 256):  # small batches: Encoding objects are memory-hungry
        batch = [d.replace(END_OF_TEXT, "") for d in docs[start : start + 256]]
        out += [np.asarray(e.ids, dtype=np.uint16) for e in backend.encode_batch(batch, add_special_tokens=False)]
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
