"""BDD100K labels -> one readable caption per frame.

BDD100K has no captions, so they are written from the labels by a small grammar:

    caption  := setting "." objects "."          (or objects first: objects "." "The scene is" setting ".")
              | setting "."                      (frames without object labels, e.g. tagging files)
    setting  := SCENE TIME WEATHER                (time and weather in either order; each omitted when undefined)
    objects  := OPENER group (";" group)*          ("There is/are", "I can see", "Visible are"...)
              | "No other road users are visible"
    group    := COUNT NOUN where [distance] [colours]
    where    := " ahead" | " on the left" | " on the right"            (all boxes in one third of the image)
              | ", " COUNT " on the left and " COUNT " ahead" ...        (spread over thirds, left to right)
    distance := ", close by" | ", N of them close by" | ", both/all close by" | ", in the distance" ...
    colours  := COLOUR before NOUN when every light in the group shows it ("two green traffic lights")
              | ", " ("N of them green" | "N red and M green")          (mixed or partly unknown colours)

Facts and how they are read from the labels:
- SCENE / TIME / WEATHER: frame attributes; `undefined` is left out (an undefined scene reads "a road").
- COUNT: number words (a/an, two ... ninety-nine, then digits) with correct plurals (bus -> buses, person ->
  people). Groups are ordered by count, then by the category order of det_20.
- where: the box centre's third of the image width: left, ahead (middle third), right.
- distance: from box size, which grows as things come closer: near when the box is at least `NEAR_FRACTION` of the
  image height or width, far when both are under `FAR_FRACTION`. A group says how many are near; a group that is
  all far says so; otherwise nothing is said.
- occluded and truncated boxes count like any other: the label still marks a real object, and a truncated box's
  visible centre still lies on the correct side. Tiny boxes (shorter side under `MIN_BOX_SIDE_PX` or area under
  `MIN_BOX_AREA_PX`) are not mentioned: at BLIP's 384 px input a 1280 px frame shrinks 3.3x and they vanish.
- Traffic lights add their known colours (NA / none is no colour).

Phrasings are chosen by an RNG seeded with (seed, frame name), so a frame's caption does not depend on file order.
Every phrasing states every fact: only wording and order vary. `blip_train.attributes` reads the facts back.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable, Iterator, Sequence

from blip_train.datasets.bdd100k import load_frames
from blip_train.datasets.records import (
    DET20_CATEGORIES,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    UNDEFINED,
    Box,
    FrameRecord,
    LabelFormatError,
)

NEAR_FRACTION = 0.15
FAR_FRACTION = 0.04
MIN_BOX_SIDE_PX = 5.0
MIN_BOX_AREA_PX = 80.0

# Wordings per attribute value. Each value's words are unique to it (see blip_train.attributes): in particular no
# phrase outside `daytime` contains "day", and "street" alone never decides the scene.
SCENE_PHRASES = {
    "city street": ("a city street", "an urban street"),
    "highway": ("a highway", "a freeway"),
    "residential": ("a residential street", "a quiet residential road"),
    "parking lot": ("a parking lot", "a parking area"),
    "gas stations": ("a gas station", "a petrol station"),
    "tunnel": ("a tunnel", "the inside of a tunnel"),
    UNDEFINED: ("a road", "the road"),
}
TIME_PHRASES = {
    "daytime": ("during the day", "in daylight"),
    "night": ("at night", "at nighttime"),
    "dawn/dusk": ("at dawn or dusk", "at twilight"),
}
WEATHER_PHRASES = {
    "clear": ("under a clear sky", "in clear weather"),
    "overcast": ("under an overcast sky", "in overcast weather"),
    "partly cloudy": ("under a partly cloudy sky", "in partly cloudy weather"),
    "rainy": ("in the rain", "in rainy weather"),
    "snowy": ("in the snow", "in snowy weather"),
    "foggy": ("in fog", "in foggy weather"),
}
#: (singular, plural) per category; unknown categories use their own name with a regular plural.
NOUNS = {
    "pedestrian": ("pedestrian", "pedestrians"),
    "rider": ("rider", "riders"),
    "car": ("car", "cars"),
    "truck": ("truck", "trucks"),
    "bus": ("bus", "buses"),
    "train": ("train", "trains"),
    "motorcycle": ("motorcycle", "motorcycles"),
    "bicycle": ("bicycle", "bicycles"),
    "traffic light": ("traffic light", "traffic lights"),
    "traffic sign": ("traffic sign", "traffic signs"),
    "other vehicle": ("special vehicle", "special vehicles"),
    "other person": ("person", "people"),
    "trailer": ("trailer", "trailers"),
}
REGIONS = ("left", "ahead", "right")
REGION_PHRASES = {"left": "on the left", "ahead": "ahead", "right": "on the right"}
LIGHT_COLOR_ORDER = ("red", "yellow", "green")
EMPTY_SCENE = "no other road users are visible"

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_CATEGORY_RANK = {name: rank for rank, name in enumerate(DET20_CATEGORIES)}


def number_word(n: int) -> str:
    """Cardinal in words up to 99 ("twenty-one"), digits beyond."""
    if n < 0:
        raise ValueError(f"negative count {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    return str(n)


def with_article(phrase: str) -> str:
    """'a car', 'an urban street'."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def noun_for(category: str, count: int) -> str:
    singular, plural = NOUNS.get(category, (category, category + "s"))
    return singular if count == 1 else plural


def counted(category: str, count: int) -> str:
    """'a car', 'three cars', 'two people'."""
    noun = noun_for(category, count)
    return with_article(noun) if count == 1 else f"{number_word(count)} {noun}"


def is_tiny(box: Box, image_width: float = IMAGE_WIDTH) -> bool:
    """Too small to see at BLIP's input size; the thresholds are for 1280 px wide frames and scale with width."""
    scale = image_width / IMAGE_WIDTH
    width, height = box.x2 - box.x1, box.y2 - box.y1
    return min(width, height) < MIN_BOX_SIDE_PX * scale or width * height < MIN_BOX_AREA_PX * scale * scale


def region_of(box: Box, image_width: float = IMAGE_WIDTH) -> str:
    centre = (box.x1 + box.x2) / 2
    if centre < image_width / 3:
        return "left"
    if centre > 2 * image_width / 3:
        return "right"
    return "ahead"


def distance_of(box: Box, image_width: float = IMAGE_WIDTH, image_height: float = IMAGE_HEIGHT) -> str:
    """near / mid / far from how much of the image the box spans."""
    extent = max((box.x2 - box.x1) / image_width, (box.y2 - box.y1) / image_height)
    if extent >= NEAR_FRACTION:
        return "near"
    if extent < FAR_FRACTION:
        return "far"
    return "mid"


def _join(parts: Sequence[str], conjunction: str = "and") -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + f" {conjunction} " + parts[-1]


def _count_of_group(k: int, total: int) -> str:
    if k == total:
        return "both" if total == 2 else "all"
    return f"{number_word(k)} of them"


def describe_group(category: str, boxes: Sequence[Box], image_width: float = IMAGE_WIDTH,
                   image_height: float = IMAGE_HEIGHT) -> str:
    """'three cars, two ahead and one on the right, one of them close by'; 'two green traffic lights ahead'."""
    total = len(boxes)
    # One pass instead of Counters: this runs for every group of 70k frames on the full train split.
    regions = {"left": 0, "ahead": 0, "right": 0}
    near = far = 0
    colours: dict[str, int] = {}
    for box in boxes:
        regions[region_of(box, image_width)] += 1
        distance = distance_of(box, image_width, image_height)
        if distance == "near":
            near += 1
        elif distance == "far":
            far += 1
        if box.light_color:
            colours[box.light_color] = colours.get(box.light_color, 0) + 1
    uniform_colour = next(iter(colours)) if len(colours) == 1 and colours[next(iter(colours))] == total else None
    if uniform_colour:
        noun = f"{uniform_colour} {noun_for(category, total)}"
        head = with_article(noun) if total == 1 else f"{number_word(total)} {noun}"
    else:
        head = counted(category, total)
    parts = [head]
    occupied = [r for r in REGIONS if regions[r]]
    if len(occupied) == 1:
        parts[0] += " " + REGION_PHRASES[occupied[0]]
    else:
        parts.append(_join([f"{number_word(regions[r])} {REGION_PHRASES[r]}" for r in occupied]))
    if near:
        parts.append("close by" if total == 1 else f"{_count_of_group(near, total)} close by")
    elif far == total:
        parts.append("in the distance" if total == 1 else f"{_count_of_group(total, total)} in the distance")
    if colours and not uniform_colour:
        if len(colours) == 1:
            colour, k = next(iter(colours.items()))
            parts.append(f"{_count_of_group(k, total)} {colour}")
        else:
            parts.append(_join([f"{number_word(colours[c])} {c}" for c in LIGHT_COLOR_ORDER if c in colours]))
    return ", ".join(parts)


def group_boxes(boxes: Iterable[Box], image_width: float = IMAGE_WIDTH) -> list[tuple[str, list[Box]]]:
    """Visible boxes grouped by category: most frequent first, ties in det_20 order, unknown ones last."""
    groups: dict[str, list[Box]] = {}
    for box in boxes:
        if not is_tiny(box, image_width):
            groups.setdefault(box.category, []).append(box)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), _CATEGORY_RANK.get(item[0], 99), item[0]))


def setting_phrase(frame: FrameRecord, rng: random.Random) -> str:
    """Scene, time of day and weather, e.g. 'a city street at night in the rain'."""
    scene = rng.choice(SCENE_PHRASES.get(frame.scene, (with_article(frame.scene),)))
    extras = []
    if frame.timeofday != UNDEFINED:
        extras.append(rng.choice(TIME_PHRASES.get(frame.timeofday, (f"at {frame.timeofday}",))))
    if frame.weather != UNDEFINED:
        extras.append(rng.choice(WEATHER_PHRASES.get(frame.weather, (f"in {frame.weather} weather",))))
    if rng.random() < 0.5:
        extras.reverse()
    return " ".join([scene, *extras])


def objects_phrase(frame: FrameRecord, rng: random.Random) -> str | None:
    """What the boxes show; None when the frame has no object labels at all (nothing can be claimed)."""
    if not frame.has_object_labels:
        return None
    groups = group_boxes(frame.boxes, frame.image_width)
    if not groups:
        return EMPTY_SCENE
    phrases = [describe_group(category, boxes, frame.image_width, frame.image_height) for category, boxes in groups]
    first_count = len(groups[0][1])
    opener = rng.choice(("there is" if first_count == 1 else "there are", "i can see", "the view shows"))
    return f"{opener} " + "; ".join(phrases)


def caption_frame(frame: FrameRecord, seed: int = 0) -> str:
    """The caption of one frame; deterministic in (seed, frame.name)."""
    rng = random.Random(f"{seed}:{frame.name}")
    setting = setting_phrase(frame, rng)
    objects = objects_phrase(frame, rng)
    if objects is None:
        text = f"{setting}."
    elif rng.random() < 0.7:
        text = f"{setting}. {objects}."
    else:
        text = f"{objects}. the scene is {setting}."
    return _capitalise_sentences(text)


def _capitalise_sentences(text: str) -> str:
    sentences = text.split(". ")
    return ". ".join(s[:1].upper() + s[1:] for s in sentences).replace(" i can see", " I can see")


def caption_vocabulary() -> list[str]:
    """Every word the grammar can write (lower case), for building a small tokenizer for the demo model."""
    words: set[str] = set()
    texts = [*(p for ps in SCENE_PHRASES.values() for p in ps), *(p for ps in TIME_PHRASES.values() for p in ps),
             *(p for ps in WEATHER_PHRASES.values() for p in ps), *(w for ns in NOUNS.values() for w in ns),
             *REGION_PHRASES.values(), EMPTY_SCENE, "there is are i can see the view shows scene and of them both all",
             "close by in distance an a", *LIGHT_COLOR_ORDER, *_ONES, *_TENS[2:]]
    for text in texts:
        for word in text.replace("-", " ").replace(",", " ").split():
            words.add(word.lower())
    return sorted(words)


def caption_records(frames: Iterable[FrameRecord], seed: int = 0) -> Iterator[dict]:
    """The CLI's JSON objects: name, caption and the three frame attributes."""
    for frame in frames:
        yield {"name": frame.name, "caption": caption_frame(frame, seed), "attributes": frame.attributes}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blip_train.captions",
        description="Write one JSON caption object per frame (JSON Lines on stdout) from a BDD100K label file "
                    "(det_20, 2018 or tagging format). Reports and warnings go to stderr.")
    parser.add_argument("--labels", required=True, help="BDD100K label JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phrasing choice (default 0)")
    args = parser.parse_args(argv)
    try:
        frames, report = load_frames(args.labels)
    except LabelFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    try:
        for record in caption_records(frames, args.seed):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
    except BrokenPipeError:  # e.g. `| head`: not an error of ours
        sys.stderr.close()
        return 0
    for line in report.warnings():
        print(f"warning: {line}", file=sys.stderr)
    print(f"captioned {report.summary()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
