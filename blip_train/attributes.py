"""Read driving facts back out of a caption: weather, scene, time of day, and which object classes it mentions.

One checker for evaluation, tests and the demo, so a model is scored exactly the way the grammar in
`blip_train.captions` writes facts. The patterns also accept common wordings of other captioners ("sunny",
"downtown", "people"), so a base BLIP model is scored fairly in a before/after comparison.
"""

from __future__ import annotations

import re

from blip_train.bdd100k import UNDEFINED

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
LIGHT_COLOR_PATTERN = re.compile(r"\b(red|yellow|green)\b", re.IGNORECASE)


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


def attribute_correct(caption: str, key: str, reference: str) -> bool | None:
    """Whether the caption states the reference value; None when the reference is undefined (not scored)."""
    if reference == UNDEFINED:
        return None
    return detect_attribute(caption, key) == reference
