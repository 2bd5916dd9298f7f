"""BDD-X annotations and split files as released: sentences, still pairing, bad rows reported, not fatal."""

import csv

import cv2
import numpy as np
import pytest

from blip_train.datasets.bddx import (
    BddxFormatError,
    BddxSegment,
    load_bddx,
    load_split,
    read_video_frames,
    still_sentences,
    video_name,
)

HEADER = ["Input.Video"] + [f"Answer.{k}{part}" for k in range(1, 16)
                            for part in ("start", "end", "action", "justification")]
URL = "https://s3-us-west-2.amazonaws.com/sq8geewpqu/samples-1k/{}.mov"


def write_csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for video, segments in rows:
            cells = [URL.format(video)]
            for segment in segments:
                cells += [str(v) for v in segment]
            cells += [""] * (len(HEADER) - len(cells))
            writer.writerow(cells)
    return path


ROWS = [
    ("06d501fd-a9ffc960", [(0, 11, "The car accelerates", "because the light has turned green."),
                           (12, 19, "The car is moving at a steady speed", "because traffic is clear.")]),
    ("01b0505f-5f564e84", [(0, 16, "The car is stopped.", "The car is at an intersection with a red light."),
                           (16, 20, "The car is accelerating", "because the light is red, and then green.")]),
    ("06d54ae6-26a3446e", [(7, 9, "The car merges left", "to get around a slower car."),
                           ("x", 12, "The car drives", "as traffic moves."),
                           (30, 45, "The car stops", "because the light is red."),
                           (5, 6, "", "no action")]),
]


def test_rows_segments_and_sentences(tmp_path):
    videos, report = load_bddx(write_csv(tmp_path / "BDD-X-Annotations_v1.csv", ROWS))
    assert [v.video for v in videos] == [r[0] for r in ROWS]
    first = videos[0]
    assert first.url == URL.format(ROWS[0][0]) and len(first.segments) == 2
    assert first.segments[0] == BddxSegment(0.0, 11.0, "The car accelerates", "because the light has turned green.")
    assert first.segments[0].sentence == "The car accelerates because the light has turned green."
    assert videos[1].segments[0].sentence == "The car is stopped. The car is at an intersection with a red light."
    assert videos[1].segments[1].justification == "because the light is red, and then green."  # quoted comma
    assert len(videos[2].segments) == 1 and report.segments == 5
    assert report.skipped == {"start/end not a number": 1, "times outside 0 <= start <= end <= 40": 1,
                              "no action sentence": 1}
    assert any("row 4, segment 2" in line for line in report.warnings())
    assert report.warnings()[0].endswith(": skipped 3 segments: start/end not a number (1), times outside 0 <= start "
                                         "<= end <= 40 (1), no action sentence (1)")


def test_a_row_without_a_url_is_counted_as_a_row(tmp_path):
    path = write_csv(tmp_path / "BDD-X-Annotations_v1.csv", ROWS[2:])
    with path.open("a", newline="") as f:
        csv.writer(f).writerow(["", "0", "10", "The car drives", "as traffic moves."] + [""] * (len(HEADER) - 5))
    videos, report = load_bddx(path)
    assert len(videos) == 1 and report.skipped_rows == {"row without a video URL": 1}
    assert report.warnings()[0] == (f"{path}: skipped 1 row: row without a video URL (1); 3 segments: start/end not "
                                    "a number (1), times outside 0 <= start <= end <= 40 (1), no action sentence (1)")


def test_stills_pair_with_segments_covering_ten_seconds(tmp_path):
    videos, _ = load_bddx(write_csv(tmp_path / "a.csv", ROWS))
    pairs = still_sentences(videos)
    assert pairs == {"06d501fd-a9ffc960.jpg": ["The car accelerates because the light has turned green."],
                     "01b0505f-5f564e84.jpg": ["The car is stopped. The car is at an intersection with a red light."]}


def test_split_files_and_video_names(tmp_path):
    split = tmp_path / "val.txt"
    split.write_text("5595_22b4f5e6-8ad80525\n5596_22b4f5e6-a1859104\n\n22b8d382-b29bfd3e\n")
    assert load_split(split) == {"22b4f5e6-8ad80525", "22b4f5e6-a1859104", "22b8d382-b29bfd3e"}
    split.write_text("5595_22b4f5e6-8ad80525\nnot a video\n")
    with pytest.raises(BddxFormatError, match="line 2"):
        load_split(split)
    assert video_name(URL.format("06d501fd-a9ffc960")) == "06d501fd-a9ffc960"


def test_files_that_are_not_bddx_name_the_file(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(BddxFormatError, match="other.csv: not a BDD-X annotation file"):
        load_bddx(other)
    with pytest.raises(BddxFormatError, match="missing.csv"):
        load_bddx(tmp_path / "missing.csv")
    huge = tmp_path / "huge.csv"
    huge.write_text(",".join(HEADER) + "\n" + URL.format("06d501fd-a9ffc960") + ",0,1,\"" + "a" * 10000 + "\"\n")
    with pytest.raises(BddxFormatError, match="huge.csv: line"):
        load_bddx(huge)


def test_frames_decode_at_segment_times(tmp_path):
    path = tmp_path / "v.mov"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(30):
        writer.write(np.full((48, 64, 3), i * 8, np.uint8))
    writer.release()
    early, late, past_end = read_video_frames(path, [0.0, 2.5, 10.0])
    assert early.shape == (48, 64, 3) and late.mean() > early.mean() + 100 and past_end is None
