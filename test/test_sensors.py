"""sensors: PointCloud2 layouts (padding, byte order, field types) and the LiDAR/radar figures."""

import numpy as np
import pytest

from blip_caption_ros.sensors import (
    CloudError,
    LidarSettings,
    RadarSettings,
    read_fields,
    summarize_lidar,
    summarize_radar,
)
from test.ros_helpers import make_cloud, xyz

POINTS = [(10.0, 0.0, 0.0), (3.0, 4.0, 0.0), (0.0, -2.0, 0.0), (-1.0, 0.0, 0.0), (20.0, 20.0, 1.0)]


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize(("height", "point_pad", "row_pad"), [(1, 0, 0), (1, 5, 0), (5, 4, 3)])
def test_read_fields_handles_padding_rows_and_byte_order(bigendian, height, point_pad, row_pad):
    columns = xyz(POINTS, intensity=[1, 2, 3, 4, 5])
    cloud = make_cloud(columns, bigendian=bigendian, height=height, point_pad=point_pad, row_pad=row_pad)
    out = read_fields(cloud, ("x", "y", "z"), ("intensity", "absent"))
    assert set(out) == {"x", "y", "z", "intensity"}
    np.testing.assert_allclose(np.column_stack([out["x"], out["y"], out["z"]]), POINTS, rtol=1e-6)
    np.testing.assert_array_equal(out["intensity"], [1, 2, 3, 4, 5])


def test_lidar_summary_figures():
    cloud = make_cloud(xyz(POINTS + [(np.nan, 1.0, 1.0), (0.0, 0.0, 0.0)]), frame_id="velodyne")
    summary = summarize_lidar(cloud, LidarSettings(sector_min_deg=-30.0, sector_max_deg=60.0, min_range_m=0.1))
    assert summary.frame_id == "velodyne"
    assert summary.points == 5  # the NaN point and the zero "no return" point are not counted
    assert summary.nearest_m == pytest.approx(1.0)  # (-1, 0, 0), behind the car
    # in [-30, 60] deg: (10,0,0) at 0 deg, (3,4,0) at 53 deg, (20,20,1) at 45 deg; (0,-2,0) is at -90 deg
    assert summary.sector_points == 3
    assert summary.sector_nearest_m == pytest.approx(5.0)


def test_lidar_sector_without_points_is_none():
    summary = summarize_lidar(make_cloud(xyz([(-5.0, 0.0, 0.0)])))
    assert summary.sector_points == 0 and summary.sector_nearest_m is None and summary.nearest_m == 5.0


def test_lidar_float64_fields_are_read():
    summary = summarize_lidar(make_cloud(xyz([(3.0, 0.0, 4.0)], dtype=np.float64)))
    assert summary.nearest_m == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("cloud", "match"),
    [
        (make_cloud(xyz(np.empty((0, 3)))), "no finite point"),
        (make_cloud(xyz([(np.nan, 0, 0), (np.inf, 1, 1)])), "no finite point"),
        (make_cloud({"x": np.ones(2, np.uint8), "y": np.ones(2, np.float32), "z": np.ones(2, np.float32)}),
         "'x' must be FLOAT32 or FLOAT64"),
        (make_cloud({"x": np.ones(2, np.float32), "y": np.ones(2, np.float32)}), "no field z"),
        (make_cloud(xyz([(1, 2, 3)]), datatypes={"x": 42}), "unknown PointField datatype 42"),
    ],
)
def test_bad_lidar_clouds_raise_cloud_error(cloud, match):
    with pytest.raises(CloudError, match=match):
        summarize_lidar(cloud)


def test_truncated_cloud_is_refused():
    cloud = make_cloud(xyz(POINTS))
    cloud.data = cloud.data[:-1]
    with pytest.raises(CloudError, match="needs 60 bytes, got 59"):
        summarize_lidar(cloud)


def test_radar_summary_with_default_velocity_field_and_rcs():
    targets = [(30.0, 0.0, 0.0), (12.0, 5.0, 0.0), (50.0, -3.0, 0.0)]
    cloud = make_cloud(xyz(targets, v_r=[-8.0, 2.0, -11.5], doppler=[0, 0, 0], rcs=[10.0, -3.5, 20.0]), "radar")
    summary = summarize_radar(cloud)
    assert summary.velocity_field == "v_r"  # first present of velocity, v_r, doppler, vx
    assert summary.targets == 3
    assert summary.nearest_m == pytest.approx(13.0)
    assert summary.closing_speed_mps == pytest.approx(11.5)
    assert summary.rcs_dbsm == pytest.approx(-3.5)  # of the nearest target
    assert summary.frame_id == "radar"


def test_radar_configured_field_receding_targets_and_no_rcs():
    cloud = make_cloud(xyz([(10.0, 0.0, 0.0)], velocity=[-5.0], doppler=[3.0]))
    summary = summarize_radar(cloud, RadarSettings(velocity_field="doppler", rcs_field="rcs"))
    assert summary.closing_speed_mps == 0.0  # the only target recedes
    assert summary.rcs_dbsm is None


def test_radar_cartesian_velocity_is_projected_on_line_of_sight():
    # target ahead-left at 45 deg moving straight back at 10 m/s: radial speed 10 * cos(45)
    cloud = make_cloud(xyz([(10.0, 10.0, 0.0)], vx=[-10.0], vy=[0.0]))
    assert summarize_radar(cloud).closing_speed_mps == pytest.approx(10 / np.sqrt(2), rel=1e-5)


def test_radar_without_velocity_field_and_empty_radar():
    assert summarize_radar(make_cloud(xyz([(1.0, 0.0, 0.0)]))).closing_speed_mps is None
    empty = summarize_radar(make_cloud(xyz(np.empty((0, 3)), v_r=[], rcs=[])))
    assert (empty.targets, empty.nearest_m, empty.closing_speed_mps, empty.rcs_dbsm) == (0, None, 0.0, None)


def test_bad_radar_clouds_raise_cloud_error():
    with pytest.raises(CloudError, match="no finite target"):
        summarize_radar(make_cloud(xyz([(np.nan, 0.0, 0.0)], v_r=[1.0])))
    with pytest.raises(CloudError, match="no velocity field 'speed'"):
        summarize_radar(make_cloud(xyz([(1.0, 0.0, 0.0)])), RadarSettings(velocity_field="speed"))
