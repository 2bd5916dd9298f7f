"""caption-index + caption-search on drives whose conditions are known: every filter returns exactly the intervals
the captions and sensor records imply."""

from __future__ import annotations

import json

import pytest

from test.support import require_module

require_module("duckdb")

from blip_caption_ros import bag_io  # noqa: E402
from blip_caption_ros.caption_bag import caption_bag  # noqa: E402
from blip_train.drives import scenario_index, scenario_search  # noqa: E402
from blip_train.drives.synthetic_drive import DriveConfig, write_drive  # noqa: E402

RAIN = "A city street at night in the rain. "
DAY = "A highway in the daytime under a clear sky. "
#: drive -> (conditions the drive is drawn with, the caption of each second)
DRIVES = {
    "rainy_night": (("rainy", "night", "city street"), [
        RAIN + "There is a car ahead.",
        RAIN + "There is a car ahead.",
        RAIN + "There is a pedestrian on the left, close by; a car ahead.",
        RAIN + "There is a pedestrian on the left, close by; a car ahead.",
        RAIN + "There is a pedestrian on the left, close by.",
        RAIN + "There is a red traffic light ahead.",
        RAIN + "I can see a pedestrian on the left, in the distance.",
        RAIN + "I can see a pedestrian on the left, in the distance.",
    ]),
    "clear_day": (("clear", "daytime", "highway"), [
        DAY + "There are two green traffic lights ahead.",
        DAY + "There are two green traffic lights ahead.",
        DAY + "There is a pedestrian on the right, close by.",
        DAY + "There is a truck on the left; a car ahead.",
        DAY + "There is a truck on the left; a car ahead.",
        DAY + "No other road users are visible.",
    ]),
}


class ScriptedCaptioner:
    """Captions frames in order from a script: the test knows exactly what each second of a drive says."""

    backend, model_name = "scripted", "scripted"

    def __init__(self, captions: list[str]):
        self.captions = list(captions)

    def caption(self, images, prompt=None):
        return [self.captions.pop(0) for _ in images]


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    """The captioned drives (caption-bag at 1 Hz over generated drives) and a DuckDB index of both."""
    root = tmp_path_factory.mktemp("scenarios")
    outputs = {}
    for name, ((weather, timeofday, scene), captions) in DRIVES.items():
        raw = root / "raw" / name
        write_drive(raw, DriveConfig(duration_s=len(captions), width=160, height=90, weather=weather,
                                     timeofday=timeofday, scene=scene, seed=len(captions)))
        outputs[name] = root / "captioned" / name
        stats = caption_bag(raw, outputs[name], ScriptedCaptioner(captions), rate_hz=1.0)
        assert stats.captioned["front"] == len(captions)
    db = root / "index.duckdb"
    assert scenario_index.main([str(root / "captioned"), "--db", str(db)]) == 0
    return outputs, db


def _records(bag) -> list[dict]:
    with bag_io.BagReader(bag) as reader:
        return [json.loads(reader.decode(m).data) for m in reader.messages(["/front/caption"])]


def _expected(outputs, predicate) -> list[tuple[str, float, float, int]]:
    """Reference intervals: runs of consecutive captions of a drive whose JSON record satisfies `predicate`."""
    intervals = []
    for name in sorted(outputs):
        run = []
        for second, record in enumerate(_records(outputs[name]) + [None]):
            if record is not None and predicate(record):
                run.append(second)
            elif run:
                intervals.append((name, float(run[0]), float(run[-1]), len(run)))
                run = []
    return intervals


def _search(db, *flags) -> list[tuple[str, float, float, int]]:
    """(drive, start s, end s, captions) of the intervals caption-search finds with these flags."""
    where, params = scenario_search.build_filter(scenario_search.build_parser().parse_args(["--db", str(db), *flags]))
    connection = scenario_index.connect(db, read_only=True)
    try:
        found = scenario_search.search(connection, where, params)
    finally:
        connection.close()
    return [(i.drive, round(i.start_s, 3), round(i.end_s, 3), i.frames) for i in found]


def _says(*words):
    return lambda record: all(w in record["caption"] for w in words)


def test_condition_filters_return_exactly_the_scripted_intervals(captioned):
    outputs, db = captioned
    assert _search(db, "--weather", "rainy", "--timeofday", "night") == [("rainy_night", 0.0, 7.0, 8)]
    assert _search(db, "--weather", "clear", "--scene", "highway") == [("clear_day", 0.0, 5.0, 6)]
    assert _search(db, "--object", "pedestrian:left") == [("rainy_night", 2.0, 4.0, 3), ("rainy_night", 6.0, 7.0, 2)]
    assert _search(db, "--object", "pedestrian:left:near") == [("rainy_night", 2.0, 4.0, 3)]
    assert _search(db, "--object", "pedestrian:far") == [("rainy_night", 6.0, 7.0, 2)]
    assert _search(db, "--object", "pedestrian:near") == [("clear_day", 2.0, 2.0, 1), ("rainy_night", 2.0, 4.0, 3)]
    assert _search(db, "--object", "pedestrian", "--object", "car:ahead") == [("rainy_night", 2.0, 3.0, 2)]
    assert _search(db, "--object", "truck:left", "--timeofday", "daytime") == [("clear_day", 3.0, 4.0, 2)]
    assert _search(db, "--light", "red") == [("rainy_night", 5.0, 5.0, 1)]
    assert _search(db, "--light", "green") == [("clear_day", 0.0, 1.0, 2)]
    assert _search(db, "--text", "traffic light") == [("clear_day", 0.0, 1.0, 2), ("rainy_night", 5.0, 5.0, 1)]
    assert _search(db, "--weather", "snowy") == []
    where, params = scenario_search.build_filter(scenario_search.build_parser().parse_args(
        ["--db", str(db), "--object", "pedestrian:far"]))
    (interval,) = scenario_search.search(scenario_index.connect(db, read_only=True), where, params)
    assert [(t, caption) for _, t, caption in interval.hits] == [(6.0, DRIVES["rainy_night"][1][6]),
                                                                  (7.0, DRIVES["rainy_night"][1][7])]
    assert interval.hits[1][0] - interval.hits[0][0] == 1_000_000_000 and interval.stamp_ns == interval.hits[0][0]
    assert _search(db, "--where", "frame_index >= 6") == [("rainy_night", 6.0, 7.0, 2)]
    for flags, words in ((("--object", "car"), ("car",)), (("--text", "In The Distance"), ("in the distance",))):
        assert _search(db, *flags) == _expected(outputs, _says(*words)), flags


def test_sensor_filters_match_the_caption_records(captioned):
    outputs, db = captioned
    records = [r for bag in outputs.values() for r in _records(bag)]
    ahead = sorted(r["lidar"]["sector"]["nearest_m"] for r in records)
    closing = sorted(r["radar"]["closing_speed_mps"] for r in records)
    lidar_m, closing_mps = ahead[len(ahead) // 2], closing[len(closing) // 2]
    expected = _expected(outputs, lambda r: r["lidar"]["sector"]["nearest_m"] <= lidar_m)
    assert expected and _search(db, "--lidar-within", str(lidar_m)) == expected
    expected = _expected(outputs, lambda r: r["radar"]["closing_speed_mps"] > closing_mps)
    assert expected and _search(db, "--closing-faster", str(closing_mps)) == expected
    combined = _expected(outputs, lambda r: "rain" in r["caption"] and "pedestrian" in r["caption"]
                         and r["lidar"]["sector"]["nearest_m"] <= lidar_m)
    assert _search(db, "--weather", "rainy", "--object", "pedestrian", "--lidar-within", str(lidar_m)) == combined


def test_the_index_is_appendable_and_reindexing_replaces_a_drive(captioned, tmp_path):
    outputs, _ = captioned
    db = tmp_path / "grow.duckdb"
    assert scenario_index.main([str(outputs["rainy_night"]), "--db", str(db)]) == 0
    assert scenario_index.main([str(outputs["clear_day"]), "--db", str(db)]) == 0
    assert scenario_index.main([str(outputs["rainy_night"]), "--db", str(db)]) == 0  # again: replaced, not doubled
    connection = scenario_index.connect(db, read_only=True)
    counts = dict(connection.execute("SELECT drive, count(*) FROM captions GROUP BY drive").fetchall())
    row = connection.execute("SELECT t_s, drive_fraction, weather, timeofday, scene, objects, object_tags, "
                             "light_colours FROM captions WHERE drive = 'rainy_night' AND frame_index = 5").fetchone()
    connection.close()
    assert counts == {name: len(captions) for name, (_, captions) in DRIVES.items()}
    t_s, fraction, weather, timeofday, scene, objects, tags, lights = row
    assert t_s == pytest.approx(5.0) and 0.5 < fraction < 0.75
    assert (weather, timeofday, scene, objects, lights) == ("rainy", "night", "city street", ["traffic light"],
                                                           ["red"])
    assert tags == ["traffic light", "traffic light:ahead"]


def test_search_cli_prints_intervals_and_writes_a_contact_sheet(captioned, tmp_path, capsys):
    _, db = captioned
    rc = scenario_search.main(["--db", str(db), "--weather", "rainy", "--object", "pedestrian:left",
                               "--html", str(tmp_path / "sheet")])
    out, err = capsys.readouterr()
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["drive", "camera", "time"] and len(lines) == 3
    assert lines[1].split()[:3] == ["rainy_night", "front", "0:02.0-0:04.0"]
    assert "2 interval(s), 5 caption(s) match" in err
    page = (tmp_path / "sheet" / "index.html").read_text()
    assert page.count('<img src="data:image/jpeg;base64,') == 5  # a thumbnail per hit
    assert page.count("open in Foxglove") == 2 and (tmp_path / "sheet" / "foxglove_layout.json").is_file()
    assert scenario_search.main(["--db", str(db), "--sql", "SELECT drive, count(*) AS n FROM captions "
                                 "GROUP BY drive ORDER BY drive"]) == 0
    assert capsys.readouterr().out.splitlines() == ["drive\tn", "clear_day\t6", "rainy_night\t8"]


@pytest.mark.parametrize("flags, message", [
    (["--weather", "drizzle"], "--weather 'drizzle': one of"),
    (["--object", "unicorn:left"], "unknown class 'unicorn'"),
    (["--object", "car:behind"], "expected CLASS[:left|ahead|right][:near|far]"),
    (["--light", "blue"], "--light 'blue'"),
    (["--where", "no_such_column > 1"], "the search failed"),
    (["--sql", "SELEC 1"], "--sql:"),
])
def test_bad_filters_name_the_flag(captioned, flags, message, capsys):
    _, db = captioned
    assert scenario_search.main(["--db", str(db), *flags]) == 2
    assert message in capsys.readouterr().err


def test_missing_inputs_are_clear_errors(tmp_path, capsys):
    assert scenario_search.main(["--db", str(tmp_path / "none.duckdb")]) == 2
    assert "none.duckdb: no such index" in capsys.readouterr().err
    raw = tmp_path / "raw"
    write_drive(raw, DriveConfig(duration_s=1.0, width=64, height=36))
    assert scenario_index.main([str(raw), "--db", str(tmp_path / "x.duckdb")]) == 2
    assert "no caption topics" in capsys.readouterr().err
