"""Read driving facts back out of a caption: weather, scene, time of day, and which object classes it mentions.

`object_mentions` also reads where each mentioned class is (left / ahead / right), whether it is close by or in the
distance, and the colours of traffic lights: the scenario index stores these, so a search reads a caption the same
way evaluation scores it.

One checker for evaluation, tests and the demo, so a model is scored exactly the way the grammar in
`blip_train.captions` writes facts. The patterns also accept common wordings of other captioners ("sunny",
"downtown", "people"), so a base BLIP model is scored fairly in a before/after comparison.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from blip_train.captions import group_boxes
from blip_train.datasets.records import UNDEFINED

AMBIGUOUS = "ambiguous"

_ATTRIBUTE_PATTERNS: dict[str, dict[str, str]] = {
    "weather": {
        "rainy": r"\b(rain|rainy|raining)\b",
        "snowy": r"\b(snow|snowy|snowing)\b",
        "foggy": r"\b(fog|foggy|misty|hazy)\b",
        "partly cloudy": r"\bpartly cloudy\b",
        "overcast": r"\bovercast\b|(?<!partly )\bcloudy\b",
        "clear": r"\b(clear|sunny)\b",
    },
    "timeofday": {
        "daytime": r"\b(day|daytime|daylight)\b",
        "night": r"\b(night|nighttime)\b",
        "dawn/dusk": r"\b(dawn|dusk|twilight|sunset|sunrise)\b",
    },
    "scene": {
        "city street": r"\b(city|urban|downtown)\b",
        "highway": r"\b(highway|freeway|motorway|interstate)\b",
        "residential": r"\b(residential|neighbou?rhood|suburban)\b",
        "parking lot": r"\bparking (lot|area)\b",
        "gas stations": r"\b(gas|petrol) stations?\b",
        "tunnel": r"\btunnels?\b",
    },
}
ATTRIBUTE_PATTERNS = {
    key: {value: re.compile(pattern, re.IGNORECASE) for value, pattern in values.items()}
    for key, values in _ATTRIBUTE_PATTERNS.items()
}

_OBJECT_PATTERNS = {
    "pedestrian": r"\b(pedestrians?|walkers?)\b",
    "rider": r"\b(riders?|cyclists?|motorcyclists?)\b",
    "car": r"\bcars?\b",
    "truck": r"\btrucks?\b",
    "bus": r"\b(bus|buses)\b",
    "train": r"\b(trains?|trams?)\b",
    "motorcycle": r"\b(motorcycles?|motorbikes?|scooters?)\b",
    "bicycle": r"\b(bicycles?|bikes?)\b",
    "traffic light": r"\btraffic lights?\b",
    "traffic sign": r"\b(traffic signs?|road signs?|street signs?)\b",
    "other vehicle": r"\b(special vehicles?)\b",
    "other person": r"\b(person|people)\b",
    "trailer": r"\btrailers?\b",
}
OBJECT_PATTERNS = {category: re.compile(p, re.IGNORECASE) for category, p in _OBJECT_PATTERNS.items()}


def detect_attribute(caption: str, key: str) -> str | None:
    """The value of `key` the caption states; None when it states none, AMBIGUOUS when it states several."""
    found = [value for value, pattern in ATTRIBUTE_PATTERNS[key].items() if pattern.search(caption)]
    if not found:
        return None
    return found[0] if len(found) == 1 else AMBIGUOUS


def detect_attributes(caption: str) -> dict[str, str | None]:
    return {key: detect_attribute(caption, key) for key in ATTRIBUTE_PATTERNS}


def mentioned_categories(caption: str) -> set[str]:
    """Object classes (det_20 names) that the caption names."""
    return {category for category, pattern in OBJECT_PATTERNS.items() if pattern.search(caption)}


REGION_PATTERNS = {
    "left": re.compile(r"\b(on|to) the left\b|\bleft\b", re.IGNORECASE),
    "ahead": re.compile(r"\bahead\b|\bin front\b", re.IGNORECASE),
    "right": re.compile(r"\b(on|to) the right\b|\bright\b", re.IGNORECASE),
}
DISTANCE_PATTERNS = {
    "near": re.compile(r"\b(close by|nearby|near|close)\b", re.IGNORECASE),
    "far": re.compile(r"\b(in the distance|far away|far off|distant)\b", re.IGNORECASE),
}
LIGHT_COLOUR_PATTERNS = {colour: re.compile(rf"\b{colour}\b", re.IGNORECASE) for colour in ("red", "yellow", "green")}
_CLAUSE_SPLIT = re.compile(r"[.;]\s*")


@dataclass(frozen=True)
class ObjectMention:
    """What a caption says about one object class: where (left/ahead/right), near/far, and light colours."""

    category: str
    regions: frozenset[str] = frozenset()
    near: bool = False
    far: bool = False
    colours: frozenset[str] = frozenset()


def _owner(names: list[tuple[int, str]], position: int) -> str:
    """The class a qualifier at `position` belongs to: the last named before it, else the first named."""
    before = [category for start, category in names if start <= position]
    return before[-1] if before else names[0][1]


def object_mentions(caption: str) -> dict[str, ObjectMention]:
    """Mentioned classes (as `mentioned_categories`) with the qualifiers the caption attaches to each.

    The caption grammar writes one group per class, separated by ';', with its qualifiers after the noun ("three
    cars, two ahead and one on the right, one of them close by"). Within a clause a qualifier belongs to the class
    named last before it (the first one when it comes before every class, as in "on the left, a pedestrian");
    colours belong to traffic lights.
    """
    found: dict[str, dict] = {}
    for clause in _CLAUSE_SPLIT.split(caption):
        names = sorted((match.start(), category) for category, pattern in OBJECT_PATTERNS.items()
                       for match in pattern.finditer(clause))
        if not names:
            continue
        for _, category in names:
            found.setdefault(category, {"regions": set(), "near": False, "far": False, "colours": set()})

        for region, pattern in REGION_PATTERNS.items():
            for match in pattern.finditer(clause):
                found[_owner(names, match.start())]["regions"].add(region)
        for distance, pattern in DISTANCE_PATTERNS.items():
            for match in pattern.finditer(clause):
                found[_owner(names, match.start())][distance] = True
        if any(category == "traffic light" for _, category in names):
            for colour, pattern in LIGHT_COLOUR_PATTERNS.items():
                if pattern.search(clause):
                    found["traffic light"]["colours"].add(colour)
    return {category: ObjectMention(category, frozenset(f["regions"]), f["near"], f["far"], frozenset(f["colours"]))
            for category, f in sorted(found.items())}


def attribute_correct(caption: str, key: str, reference: str) -> bool | None:
    """Whether the caption states the reference value; None when the reference is undefined (not scored)."""
    if reference == UNDEFINED:
        return None
    return detect_attribute(caption, key) == reference


# --- aggregate scoring over a set of frames -------------------------------------------------------------------------

ATTRIBUTE_KEYS = ("timeofday", "weather", "scene")


def labelled_categories(frame) -> set[str]:
    """Object classes a correct caption names: those of the boxes the caption grammar mentions (not tiny ones)."""
    return {category for category, _ in group_boxes(frame.boxes) if category in OBJECT_PATTERNS}


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def score_attribute(captions, references, key: str) -> dict:
    """Accuracy of one attribute over frames whose reference is defined, with the majority-class rate beside it.

    `per_value` gives accuracy (recall) and support per reference value; `confusion` counts what was stated
    for each reference value (`none` when nothing, `ambiguous` when several values).
    """
    per_value: dict[str, list[int]] = {}
    confusion: dict[str, dict[str, int]] = {}
    correct = stated = total = 0
    for caption, reference in zip(captions, references, strict=True):
        if reference == UNDEFINED:
            continue
        predicted = detect_attribute(caption, key)
        hit = predicted == reference
        total += 1
        correct += hit
        stated += predicted not in (None, AMBIGUOUS)
        counts = per_value.setdefault(reference, [0, 0])
        counts[0] += hit
        counts[1] += 1
        row = confusion.setdefault(reference, {})
        label = predicted or "none"
        row[label] = row.get(label, 0) + 1
    majority_value, majority_support = max(per_value.items(), key=lambda kv: (kv[1][1], kv[0]),
                                           default=(None, [0, 0]))
    return {
        "accuracy": _rate(correct, total),
        "support": total,
        "majority_value": majority_value,
        "majority_rate": _rate(majority_support[1], total),
        "stated_rate": _rate(stated, total),
        "per_value": {value: {"accuracy": _rate(hits, n), "support": n}
                      for value, (hits, n) in sorted(per_value.items(), key=lambda kv: -kv[1][1])},
        "confusion": confusion,
    }


def score_objects(captions, frames) -> dict:
    """Object-class mentions against the labelled visible classes: micro recall and precision, and per class.

    Frames without object labels (tagging files) are not scored.
    """
    per_class = {category: {"labelled": 0, "found": 0, "mentioned": 0, "correct_mentions": 0}
                 for category in OBJECT_PATTERNS}
    exact = frames_scored = 0
    for caption, frame in zip(captions, frames, strict=True):
        if not frame.has_object_labels:
            continue
        frames_scored += 1
        labelled = labelled_categories(frame)
        mentioned = mentioned_categories(caption)
        exact += labelled == mentioned
        for category in labelled:
            per_class[category]["labelled"] += 1
            per_class[category]["found"] += category in mentioned
        for category in mentioned:
            per_class[category]["mentioned"] += 1
            per_class[category]["correct_mentions"] += category in labelled
    labelled_total = sum(c["labelled"] for c in per_class.values())
    found_total = sum(c["found"] for c in per_class.values())
    mentioned_total = sum(c["mentioned"] for c in per_class.values())
    correct_total = sum(c["correct_mentions"] for c in per_class.values())
    return {
        "recall": _rate(found_total, labelled_total),
        "precision": _rate(correct_total, mentioned_total),
        "exact_set_rate": _rate(exact, frames_scored),
        "frames": frames_scored,
        "per_class": {
            category: {"recall": _rate(c["found"], c["labelled"]), "support": c["labelled"],
                       "precision": _rate(c["correct_mentions"], c["mentioned"]), "mentioned": c["mentioned"]}
            for category, c in per_class.items() if c["labelled"] or c["mentioned"]
        },
    }


def score_captions(captions, frames) -> dict:
    """Attribute accuracies (time of day, weather, scene) and object mentions of captions of `frames`."""
    if len(captions) != len(frames):
        raise ValueError(f"{len(captions)} captions for {len(frames)} frames")
    scores = {key: score_attribute(captions, [getattr(frame, key) for frame in frames], key)
              for key in ATTRIBUTE_KEYS}
    scores["objects"] = score_objects(captions, frames)
    return scores
