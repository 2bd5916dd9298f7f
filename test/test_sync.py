"""sync: nearest-in-time matching, the offset bound, late arrivals, bounds and bag loops."""

import pytest

from blip_caption_ros.sync import SensorBuffer, Stamped

MS = 1_000_000


def test_nearest_within_bound_and_none_beyond():
    buffer = SensorBuffer(capacity=10)
    for stamp in (100, 200, 300):
        buffer.add(stamp * MS, f"s{stamp}")
    assert buffer.nearest(190 * MS, 50 * MS) == Stamped(200 * MS, "s200")
    assert buffer.nearest(240 * MS, 50 * MS) == Stamped(200 * MS, "s200")
    assert buffer.nearest(260 * MS, 50 * MS) == Stamped(300 * MS, "s300")
    assert buffer.nearest(250 * MS, 50 * MS) == Stamped(200 * MS, "s200")  # tie: the earlier
    assert buffer.nearest(351 * MS, 50 * MS) is None  # stale: never reported
    assert buffer.nearest(49 * MS, 50 * MS) is None
    assert SensorBuffer(capacity=3).nearest(0, 10**12) is None


def test_late_arrival_that_is_nearer_wins():
    buffer = SensorBuffer(capacity=10)
    buffer.add(100 * MS, "early")
    assert buffer.nearest(140 * MS, 100 * MS).value == "early"
    buffer.add(150 * MS, "late")  # arrives after the image, nearer in time
    assert buffer.nearest(140 * MS, 100 * MS).value == "late"


def test_small_out_of_order_arrivals_are_inserted_in_place():
    buffer = SensorBuffer(capacity=10)
    assert not any([buffer.add(stamp * MS, stamp) for stamp in (100, 300, 200)])  # no reset
    assert buffer.nearest(210 * MS, 20 * MS).value == 200
    assert buffer.newest_stamp_ns == 300 * MS


def test_capacity_drops_the_oldest():
    buffer = SensorBuffer(capacity=3)
    for stamp in range(5):
        buffer.add(stamp * MS, stamp)
    assert len(buffer) == 3
    assert buffer.nearest(0, MS // 2) is None
    assert buffer.nearest(2 * MS, 0).value == 2


def test_time_jumping_backwards_resets_the_buffer():
    buffer = SensorBuffer(capacity=10, backwards_reset_ns=1_000 * MS)
    buffer.add(50_000 * MS, "end of bag")
    assert buffer.add(10 * MS, "start of next loop") is True
    assert len(buffer) == 1
    assert buffer.nearest(50_000 * MS, 10**12).value == "start of next loop"


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        SensorBuffer(capacity=0)
