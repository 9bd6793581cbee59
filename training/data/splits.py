"""Split definitions for speech/motion datasets in FaceFormer's layout.

A dataset is described by a :class:`DatasetSpec`: its frame rates, vertex count, subjects and named
splits. A split is a union of :class:`SplitRule` objects, each selecting clips by subject, by sentence
number (the trailing digits of the clip name) and/or by explicit clip name.

Clip names are ``<subject>_<clip>``. The subject is the longest known subject (a ``templates.pkl`` key)
followed by ``_``, else everything before the last ``_`` (VOCASET ``FaceTalk_170728_03272_TA_sentence01``
-> ``FaceTalk_170728_03272_TA``, BIWI ``F2_e01`` -> ``F2``); the sentence number is the trailing digits of
the name (``1`` for both).

Standard splits, checked against the public reference code (commit e2f9b8b of EvelynFan/FaceFormer):

* VOCASET (``EvelynFan/FaceFormer`` ``vocaset/main.py`` argument defaults, which follow VOCA's
  ``config_parser.py``; sentence ranges in ``vocaset/data_loader.py``):
  train = 8 subjects x sentences 1-40, val = 2 subjects x sentences 21-40, test = 2 subjects x
  sentences 21-40. Motion files are 60 fps and the loader keeps every 2nd frame (``[::2]``) -> 30 fps;
  ``templates.pkl`` is read with ``encoding='latin1'``. ``Doubiiu/CodeTalker``
  ``CodeTalker/dataset/data_loader.py`` uses the same ranges (``range(1,41)``, ``range(21,41)``).
* BIWI (``EvelynFan/FaceFormer`` ``biwi/main.py`` and ``biwi/data_loader.py``): train and val subjects
  F2 F3 F4 M3 M4 M5; train = sentences e01-e32, val = e33-e36, test = e37-e40; 25 fps, no subsampling.
  FaceFormer's default ``--test_subjects`` are the 8 unseen subjects F1 F5 F6 F7 F8 M1 M2 M6 (the
  paper's BIWI-Test-B); BIWI-Test-A is the same sentences e37-e40 spoken by the 6 training subjects, as
  in ``psyai-net/SelfTalk_release`` ``readme.md`` (``--test_subjects "F2 F3 F4 M3 M4 M5"``) with the
  ranges of its ``data_loader.py``. Here ``test`` is Test-A and ``test_b`` is Test-B.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "BIWI",
    "BIWI_TEST_B_SUBJECTS",
    "BIWI_TRAIN_SUBJECTS",
    "DatasetSpec",
    "SplitRule",
    "VOCASET",
    "VOCASET_TEST_SUBJECTS",
    "VOCASET_TRAIN_SUBJECTS",
    "VOCASET_VAL_SUBJECTS",
    "builtin_spec",
    "clip_sentence",
    "clip_subject",
]

VOCASET_TRAIN_SUBJECTS: tuple[str, ...] = (
    "FaceTalk_170728_03272_TA",
    "FaceTalk_170904_00128_TA",
    "FaceTalk_170725_00137_TA",
    "FaceTalk_170915_00223_TA",
    "FaceTalk_170811_03274_TA",
    "FaceTalk_170913_03279_TA",
    "FaceTalk_170904_03276_TA",
    "FaceTalk_170912_03278_TA",
)
VOCASET_VAL_SUBJECTS: tuple[str, ...] = ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA")
VOCASET_TEST_SUBJECTS: tuple[str, ...] = ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA")

BIWI_TRAIN_SUBJECTS: tuple[str, ...] = ("F2", "F3", "F4", "M3", "M4", "M5")
BIWI_TEST_B_SUBJECTS: tuple[str, ...] = ("F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6")

_TRAILING_DIGITS = re.compile(r"(\d+)$")


def clip_subject(name: str, known: Iterable[str] = ()) -> str:
    """Subject of clip ``name``: the longest of ``known`` followed by ``_``, else the text before the last ``_``."""
    best = ""
    for s in known:
        if len(s) > len(best) and name.startswith(s + "_"):
            best = s
    if best:
        return best
    return name.rsplit("_", 1)[0] if "_" in name else name


def clip_sentence(name: str) -> int | None:
    """Sentence number of a clip: the trailing digits of its name (``None`` when it ends in no digit)."""
    m = _TRAILING_DIGITS.search(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class SplitRule:
    """Selects clips: all given conditions must hold; an absent condition (``None``) matches anything.

    ``subjects``: allowed subjects; ``sentences``: inclusive ``(first, last)`` sentence-number range;
    ``clips``: allowed clip names.
    """

    subjects: tuple[str, ...] | None = None
    sentences: tuple[int, int] | None = None
    clips: frozenset[str] | None = None

    def matches(self, name: str, subject: str, sentence: int | None) -> bool:
        if self.subjects is not None and subject not in self.subjects:
            return False
        if self.sentences is not None:
            if sentence is None or not (self.sentences[0] <= sentence <= self.sentences[1]):
                return False
        return self.clips is None or name in self.clips


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: frame rates, vertex count, subjects and splits.

    ``fps``: motion rate the loader delivers; ``vertices_fps``: rate of the ``.npy`` files (an integer
    multiple of ``fps``; the loader keeps every ``stride``-th frame). ``n_verts``: expected vertex count
    (``None``: taken from the templates). ``subjects``: all subjects in a stable order (``None``: the
    templates' keys, sorted). ``train_subjects``: the subjects a speaker-style embedding is trained on, in
    one-hot order. ``frame_tolerance``: allowed difference, in motion frames, between a clip's frame
    count and its audio duration x ``fps``.
    """

    name: str
    kind: str
    fps: float
    vertices_fps: float
    n_verts: int | None
    splits: Mapping[str, tuple[SplitRule, ...]]
    subjects: tuple[str, ...] | None = None
    train_subjects: tuple[str, ...] = ()
    frame_tolerance: int = 5
    description: str = field(default="", compare=False)

    @property
    def stride(self) -> int:
        """Frame step from the files' rate to the delivered rate (2 for VOCASET)."""
        return int(round(self.vertices_fps / self.fps))

    def split_names(self) -> tuple[str, ...]:
        return tuple(self.splits)

    def split_subjects(self, split: str) -> tuple[str, ...] | None:
        """Subjects a split may contain (``None``: any subject; ``split`` must be defined)."""
        rules = self.splits[split]
        if any(r.subjects is None for r in rules):
            return None
        out: list[str] = []
        for r in rules:
            out.extend(s for s in r.subjects or () if s not in out)
        return tuple(out)

    def in_split(self, split: str, name: str, subject: str, sentence: int | None) -> bool:
        """Whether clip ``name`` belongs to ``split`` (``"all"`` holds every clip)."""
        if split == "all":
            return True
        return any(r.matches(name, subject, sentence) for r in self.splits.get(split, ()))


VOCASET = DatasetSpec(
    name="vocaset",
    kind="vocaset",
    fps=30.0,
    vertices_fps=60.0,
    n_verts=5023,
    splits={
        "train": (SplitRule(VOCASET_TRAIN_SUBJECTS, (1, 40)),),
        "val": (SplitRule(VOCASET_VAL_SUBJECTS, (21, 40)),),
        "test": (SplitRule(VOCASET_TEST_SUBJECTS, (21, 40)),),
    },
    subjects=VOCASET_TRAIN_SUBJECTS + VOCASET_VAL_SUBJECTS + VOCASET_TEST_SUBJECTS,
    train_subjects=VOCASET_TRAIN_SUBJECTS,
    description="VOCASET (FLAME topology, 60 fps files delivered at 30 fps)",
)

BIWI = DatasetSpec(
    name="biwi",
    kind="biwi",
    fps=25.0,
    vertices_fps=25.0,
    n_verts=23370,
    splits={
        "train": (SplitRule(BIWI_TRAIN_SUBJECTS, (1, 32)),),
        "val": (SplitRule(BIWI_TRAIN_SUBJECTS, (33, 36)),),
        "test": (SplitRule(BIWI_TRAIN_SUBJECTS, (37, 40)),),  # BIWI-Test-A
        "test_b": (SplitRule(BIWI_TEST_B_SUBJECTS, (37, 40)),),  # BIWI-Test-B (unseen subjects)
    },
    subjects=BIWI_TRAIN_SUBJECTS + BIWI_TEST_B_SUBJECTS,
    train_subjects=BIWI_TRAIN_SUBJECTS,
    description="BIWI (23370 vertices, 25 fps)",
)

_BUILTIN = {"vocaset": VOCASET, "biwi": BIWI}


def builtin_spec(kind: str) -> DatasetSpec:
    """The spec of a standard dataset: ``"vocaset"`` or ``"biwi"``."""
    return _BUILTIN[kind]
