"""A seeded generator of varied English sentences for the synthetic speech corpus.

The vocabulary below was chosen so that every English phoneme (CMU ARPAbet) occurs in many
contexts: word-initial, medial and final consonants, clusters, all vowels and diphthongs,
including the rarer ones (zh: measure, vision, beige; oy: voice, noise; uh: book, wood;
aw: house, cloud; th/dh: thin, mother). Sentences are built from a handful of clause patterns
(statements, questions, commands, subordinate clauses), so a corpus of any size is available
without shipping a text collection.
"""

from __future__ import annotations

import random

NOUNS = """
apple arm baby badge ball bath beach bear bed bell bike bird boat book boot bottle box boy bread
bridge brother brush bubble butter cabbage cake camera candle cap car carpet cat chair cheese
cherry chicken child church circle city clock cloud coat coin cookie corner cow cup dog doll door
dragon dream duck egg engine eye father feather fence finger fish flag flower foot fork fox frog
garage garden gate giraffe girl glass glove goat grape guitar hammer hand hat horse house island
jacket jam jar jelly judge juice kettle key king kitchen kite knife ladder lamp leaf lemon letter
lion lip machine map measure melon milk mirror monkey moon mother mountain mouse mouth music nail
needle nest night nose ocean orange owl oyster page paint pancake paper parrot peach pencil pepper
piano picture pig pillow pizza plane plate pocket potato puppy queen rabbit rain ring river road
robot rock roof rose ship shoe shop shovel singer sister sky snake sock spoon square star stone
street sugar summer sun table teacher thumb tiger toe toy train treasure tree truck turtle umbrella
vase village violin voice wagon wall watch water weather whale wheel window wing winter wolf wood
yard yacht zebra zipper television vision garage decision pleasure beige noise choice joy
""".split()

ADJECTIVES = """
angry awful bad beautiful big black blue bold brave bright broken brown busy calm cheap cheerful
clean clever cloudy cold cool crazy curly dark deep dirty dry early easy empty enormous fancy fast
fat fine flat foolish fresh friendly full funny fuzzy gentle giant glad golden good gray great
green happy hard heavy high hollow huge hungry icy jolly juicy kind large late lazy little long
loud lovely lucky mighty modern muddy narrow new nice noisy odd old orange pink plain pleasant
polite poor pretty proud purple quick quiet rare red rich rough round royal rusty sad salty shiny
short shy silly simple sleepy slow small smooth soft sour spicy strange strong sunny sweet tall
thick thin tiny tough ugly usual warm wet white whole wide wild wise wooden yellow young zealous
""".split()

VERBS_PAST = """
admired baked borrowed bought brought built carried caught chased checked chose cleaned climbed
cooked covered crushed dropped enjoyed fetched filled fixed followed found gathered grabbed guarded
hid hugged joined judged kept kicked kissed knew lifted liked loved measured mended moved noticed
opened owned packed painted passed pinched placed played pulled pushed raised reached read
rescued robbed rolled sold saw shared shook showed signed sketched smelled spotted squeezed stole
stopped studied taught threw touched treasured trusted visited voiced wanted washed watched
weighed wiped wished wrapped
""".split()

VERBS_BASE = """
bring build buy carry catch chase check choose clean climb cook cover draw find fix follow grab
help hold join keep kick lift like measure move open paint pass pick play pull push reach read
save share show sing smell take teach throw touch visit wash watch wear
""".split()

ADVERBS = """
almost always bravely calmly carefully cheerfully eagerly easily finally gently gladly happily
honestly loudly merely mostly nearly never often politely quickly quietly rarely really seldom
slowly softly sometimes suddenly surely truly usually warmly wisely yearly
""".split()

PLACES = """
above across after against along among around at behind below beneath beside between beyond by
from inside near outside over past through toward under until with within without
""".split()

NAMES = """
Anna Ben Charlotte David Edgar Fiona George Hannah Isaac Julia Kevin Laura Michael Nora Oscar
Paula Quentin Rosa Samuel Thomas Ursula Victor Wendy Xavier Yusuf Zoe Joy Roy George Judith
""".split()

TIME = """
yesterday today tonight this_morning last_summer every_winter on_thursday at_noon in_the_evening
before_lunch after_dinner during_the_storm
""".split()

_DETS = ["the", "a", "my", "your", "our", "their", "this", "that", "every", "one", "his", "her"]


def _np(rng: random.Random) -> str:
    det = rng.choice(_DETS)
    noun = rng.choice(NOUNS)
    if rng.random() < 0.6:
        adj = rng.choice(ADJECTIVES)
        if det == "a" and adj[0] in "aeiou":
            det = "an"
        return f"{det} {adj} {noun}"
    if det == "a" and noun[0] in "aeiou":
        det = "an"
    return f"{det} {noun}"


def _when(rng: random.Random) -> str:
    return rng.choice(TIME).replace("_", " ")


def _lower_first(phrase: str) -> str:
    """Lower-case a capitalised determiner at the start of a phrase (names keep their capital)."""
    first = phrase.split()[0]
    return phrase[0].lower() + phrase[1:] if first.lower() in _DETS or first == "An" else phrase


def sentence(rng: random.Random) -> str:
    """One sentence from one of several clause patterns."""
    k = rng.randrange(8)
    subj = rng.choice(NAMES) if rng.random() < 0.35 else _np(rng)
    subj = subj[0].upper() + subj[1:]
    if k == 0:
        return f"{subj} {rng.choice(VERBS_PAST)} {_np(rng)} {rng.choice(PLACES)} {_np(rng)}."
    if k == 1:
        return f"{subj} {rng.choice(ADVERBS)} {rng.choice(VERBS_PAST)} {_np(rng)} {_when(rng)}."
    if k == 2:
        return f"Did {_lower_first(subj)} {rng.choice(VERBS_BASE)} {_np(rng)}?"
    if k == 3:
        return f"Please {rng.choice(VERBS_BASE)} {_np(rng)} {rng.choice(PLACES)} {_np(rng)}."
    if k == 4:
        clause = f"When {_np(rng)} {rng.choice(VERBS_PAST)} {_np(rng)}"
        return f"{clause}, {_lower_first(subj)} {rng.choice(VERBS_PAST)} {_np(rng)}."
    if k == 5:
        return f"{subj} was {rng.choice(ADJECTIVES)} and {rng.choice(ADJECTIVES)} {_when(rng)}."
    if k == 6:
        return f"Why would {_np(rng)} {rng.choice(VERBS_BASE)} {_np(rng)} {rng.choice(PLACES)} {_np(rng)}?"
    return f"{subj} {rng.choice(VERBS_PAST)} {_np(rng)}, but {_np(rng)} {rng.choice(VERBS_PAST)} {_np(rng)}."


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences, deterministic for ``seed``."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s = sentence(rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
