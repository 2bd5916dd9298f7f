"""BDD-X: human action + justification sentences for BDD videos, as released.

`BDD-X-Annotations_v1.csv` has one row per video: `Input.Video` (a URL whose file stem is the BDD video name) and up
to 15 segments `Answer.{k}start`, `Answer.{k}end` (seconds, 0-40), `Answer.{k}action`, `Answer.{k}justification`;
unused slots are empty. The split files (`train.txt`, `val.txt`, `test.txt`) list `INDEX_VIDEONAME` per line.

A segment becomes one sentence: "The car slows to a stop because the light is red." (a justification that is a
sentence of its own, "The light is red.", stays one). A BDD100K still is the video's frame at t = 10 s, so the
segments covering 10 s describe it; other frames can be decoded from the video at any segment's time.

The CSV is untrusted input: the file (BLIP_MAX_CSV_BYTES) and each field (BLIP_MAX_CSV_FIELD_CHARS) are bounded,
a malformed segment is skipped and reported (file, row, slot), never fatal; a file without the expected header, or
that is not UTF-8, is a `BddxFormatError` naming the file.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from blip_caption_ros.input_limits import InputTooLargeError
from blip_train.datasets.records import CSV_FIELD_CHARS, CSV_FILE_BYTES

MAX_SEGMENTS = 15
VIDEO_SECONDS = 40.0
STILL_TIME_S = 10.0  # BDD100K's 100k images are the frame at 10 s of each video
_CONNECTIVES = ("because", "as ", "since", "due", "to ", "so ", "for ", "in order", "while", "after", "before")
_VIDEO_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{8}$")


class BddxFormatError(ValueError):
    """A BDD-X file that cannot be read; the message names the file (and row)."""


@dataclass(frozen=True)
class BddxSegment:
    start_s: float
    end_s: float
    action: str
    justification: str

    @property
    def sentence(self) -> str:
        action = self.action.strip().rstrip(".")
        justification = self.justification.strip().rstrip(".")
        if not justification:
            return action + "."
        if justification.lower().startswith(_CONNECTIVES):
            return f"{action} {justification[0].lower()}{justification[1:]}."
        return f"{action}. {justification[0].upper()}{justification[1:]}."

    def covers(self, t_s: float) -> bool:
        return self.start_s <= t_s <= self.end_s

    @property
    def midpoint_s(self) -> float:
        return (self.start_s + self.end_s) / 2


@dataclass(frozen=True)
class BddxVideo:
    video: str
    url: str
    row: int
    segments: tuple[BddxSegment, ...]

    def segments_at(self, t_s: float) -> list[BddxSegment]:
        return [s for s in self.segments if s.covers(t_s)]


@dataclass
class BddxReport:
    source: str
    rows: int = 0
    segments: int = 0
    skipped: Counter = field(default_factory=Counter)  # segments, by reason
    skipped_rows: Counter = field(default_factory=Counter)  # whole rows (videos), by reason
    examples: list[str] = field(default_factory=list)

    def skip(self, reason: str, where: str, whole_row: bool = False) -> None:
        (self.skipped_rows if whole_row else self.skipped)[reason] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{where}: {reason}")

    def warnings(self) -> list[str]:
        parts = []
        for unit, counts in (("row", self.skipped_rows), ("segment", self.skipped)):
            if counts:
                total = sum(counts.values())
                summary = ", ".join(f"{reason} ({n})" for reason, n in counts.most_common())
                parts.append(f"{total} {unit}{'' if total == 1 else 's'}: {summary}")
        return [f"{self.source}: skipped {'; '.join(parts)}", *self.examples] if parts else []


def video_name(url: str) -> str:
    """`https://.../samples-1k/06d501fd-a9ffc960.mov` -> `06d501fd-a9ffc960`."""
    return PurePosixPath(urlparse(url.strip()).path).stem


def load_bddx(path: str | Path) -> tuple[list[BddxVideo], BddxReport]:
    """Read BDD-X-Annotations_v1.csv (or a file with its header); size limits as in blip_caption_ros.input_limits."""
    path = Path(path)
    report = BddxReport(source=str(path))
    try:
        CSV_FILE_BYTES.check(path.stat().st_size, f"{path}: BDD-X annotation file")
        handle = path.open(newline="", encoding="utf-8-sig")
    except InputTooLargeError as exc:
        raise BddxFormatError(str(exc)) from None
    except OSError as exc:
        raise BddxFormatError(f"{path}: cannot read BDD-X annotations: {exc.strerror or exc}") from None
    videos = []
    field_limit = CSV_FIELD_CHARS.value()
    previous_limit = csv.field_size_limit(field_limit)  # process-wide in the csv module: restored below
    try:
        with handle:
            reader = csv.DictReader(handle)
            try:
                if not reader.fieldnames or "Input.Video" not in reader.fieldnames:
                    raise BddxFormatError(f"{path}: not a BDD-X annotation file (no 'Input.Video' column in the "
                                          "header)")
                for row_number, row in enumerate(reader, start=2):  # line 1 is the header
                    report.rows += 1
                    url = (row.get("Input.Video") or "").strip()
                    name = video_name(url)
                    if not url or not name:
                        report.skip("row without a video URL", f"row {row_number}", whole_row=True)
                        continue
                    segments = tuple(_segments(row, row_number, report))
                    report.segments += len(segments)
                    videos.append(BddxVideo(name, url, row_number, segments))
            except csv.Error as exc:
                hint = f" (fields are limited to {field_limit} characters: {CSV_FIELD_CHARS.env})" \
                    if "field larger than field limit" in str(exc) else ""
                raise BddxFormatError(f"{path}: line {reader.line_num}: {exc}{hint}") from None
            except UnicodeDecodeError as exc:
                raise BddxFormatError(f"{path}: line {reader.line_num + 1}: not UTF-8 text ({exc.reason})") from None
    finally:
        csv.field_size_limit(previous_limit)
    return videos, report


def _segments(row: dict, row_number: int, report: BddxReport):
    for k in range(1, MAX_SEGMENTS + 1):
        fields = [(row.get(f"Answer.{k}{part}") or "").strip() for part in ("start", "end", "action", "justification")]
        if not any(fields):
            continue
        where = f"row {row_number}, segment {k}"
        start, end, action, justification = fields
        if not action:
            report.skip("no action sentence", where)
            continue
        try:
            start_s, end_s = float(start), float(end)
        except ValueError:
            report.skip("start/end not a number", where)
            continue
        if not (0 <= start_s <= end_s <= VIDEO_SECONDS):
            report.skip(f"times outside 0 <= start <= end <= {VIDEO_SECONDS:g}", where)
            continue
        yield BddxSegment(start_s, end_s, action, justification)


def load_split(path: str | Path) -> set[str]:
    """Video names of a BDD-X split file (`INDEX_VIDEONAME` per line; bare names are accepted too)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BddxFormatError(f"{path}: cannot read split file: {exc.strerror or exc}") from None
    names = set()
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        name = line.split("_", 1)[1] if "_" in line else line
        name = name.removesuffix(".mov")
        if not _VIDEO_NAME.match(name):
            raise BddxFormatError(f"{path}: line {number}: {line!r} is not INDEX_VIDEONAME")
        names.add(name)
    return names


def still_sentences(videos: list[BddxVideo]) -> dict[str, list[str]]:
    """Image name (`VIDEO.jpg`, as in images/100k) -> the sentences of segments covering the still at 10 s."""
    out: dict[str, list[str]] = {}
    for video in videos:
        sentences = [s.sentence for s in video.segments_at(STILL_TIME_S)]
        if sentences:
            out.setdefault(f"{video.video}.jpg", []).extend(sentences)
    return out


def read_video_frames(video_path: str | Path, times_s: list[float]):
    """RGB frames (numpy) decoded from a BDD video at the given times; a time past the end gives None."""
    import cv2

    capture = cv2.VideoCapture(str(video_path))
    if not capture.isOpened():
        raise BddxFormatError(f"{video_path}: cannot open as a video")
    frames = []
    try:
        for t in times_s:
            capture.set(cv2.CAP_PROP_POS_MSEC, t * 1000.0)
            ok, bgr = capture.read()
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None)
    finally:
        capture.release()
    return frames
