"""The TF module: the buffer on a known chain (pure), message conversions, and /tf over DDS."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pram_ros.geometry import invert, make_transform, yaw_transform
from pram_ros.ros.tf import (
    NS_PER_S,
    TfBuffer,
    TfLookupError,
    matrix_from_pose_msg,
    matrix_from_transform_msg,
    pose_msg_from_matrix,
    time_msg_from_ns,
    transform_stamped_msg,
)

T0 = 1_700_000_000 * NS_PER_S
BASE_FROM_CAMERA = make_transform(Rotation.from_euler("xyz", [-90, 0, -90], degrees=True).as_matrix(), [0.1, 0, 0.2])


def odom_from_base(seconds: float) -> np.ndarray:
    return yaw_transform(2.0 * seconds, 0.5 * seconds, np.deg2rad(90.0) * seconds)


def map_from_odom(seconds: float) -> np.ndarray:
    return yaw_transform(1.0, -2.0 + 0.1 * seconds, 0.3 + 0.01 * seconds)


@pytest.fixture()
def chain() -> TfBuffer:
    """map -> odom -> base_link (dynamic, samples every 0.5 s over 0..2 s) -> camera (static),
    plus odom -> imu (static) as a side branch."""
    buffer = TfBuffer(cache_s=10.0)
    for step in range(5):
        seconds = 0.5 * step
        buffer.add("map", "odom", T0 + int(seconds * NS_PER_S), map_from_odom(seconds))
        buffer.add("odom", "base_link", T0 + int(seconds * NS_PER_S), odom_from_base(seconds))
    buffer.add("base_link", "camera", T0, BASE_FROM_CAMERA, static=True)
    buffer.add("odom", "imu", T0, make_transform(np.eye(3), [0.0, 0.0, 0.3]), static=True)
    return buffer


def test_chain_lookup_and_inverse(chain):
    stamp = T0 + NS_PER_S  # a sample time of both dynamic edges
    expected = map_from_odom(1.0) @ odom_from_base(1.0) @ BASE_FROM_CAMERA
    np.testing.assert_allclose(chain.lookup("map", "camera", stamp), expected, atol=1e-12)
    np.testing.assert_allclose(chain.lookup("camera", "map", stamp), invert(expected), atol=1e-12)
    np.testing.assert_allclose(chain.lookup("/map", "camera", stamp), expected, atol=1e-12)  # tf2 strips "/"
    np.testing.assert_allclose(chain.lookup("camera", "camera", stamp), np.eye(4))


def test_lookup_across_branches_goes_through_the_common_ancestor(chain):
    stamp = T0 + NS_PER_S
    odom_from_imu = make_transform(np.eye(3), [0.0, 0.0, 0.3])
    expected = invert(odom_from_base(1.0) @ BASE_FROM_CAMERA) @ odom_from_imu
    np.testing.assert_allclose(chain.lookup("camera", "imu", stamp), expected, atol=1e-12)


def test_interpolation_midpoint_is_exact():
    buffer = TfBuffer()
    buffer.add("odom", "base_link", T0, yaw_transform(0.0, 0.0, 0.0))
    buffer.add("odom", "base_link", T0 + NS_PER_S, yaw_transform(2.0, -4.0, np.deg2rad(90.0)))
    middle = buffer.lookup("odom", "base_link", T0 + NS_PER_S // 2)
    np.testing.assert_allclose(middle, yaw_transform(1.0, -2.0, np.deg2rad(45.0)), atol=1e-12)
    quarter = buffer.lookup("odom", "base_link", T0 + NS_PER_S // 4)
    np.testing.assert_allclose(quarter, yaw_transform(0.5, -1.0, np.deg2rad(22.5)), atol=1e-12)


def test_interpolates_each_edge_between_its_bracketing_samples(chain):
    seconds = 1.25  # between the samples at 1.0 and 1.5 s
    expected = map_from_odom(seconds) @ odom_from_base(seconds)  # both are linear in t: yaw and position
    np.testing.assert_allclose(chain.lookup("map", "base_link", T0 + int(seconds * NS_PER_S)), expected, atol=1e-9)


def test_static_edges_hold_at_any_time():
    buffer = TfBuffer(cache_s=1.0)
    buffer.add("base_link", "camera", T0, BASE_FROM_CAMERA, static=True)
    for stamp in (0, T0 - 3600 * NS_PER_S, T0 + 3600 * NS_PER_S):
        np.testing.assert_allclose(buffer.lookup("base_link", "camera", stamp), BASE_FROM_CAMERA)
    assert buffer.can_transform("camera", "base_link", None)


def test_unknown_and_disconnected_frames_say_so(chain):
    with pytest.raises(TfLookupError, match="'nowhere' is unknown"):
        chain.lookup("map", "nowhere", T0)
    chain.add("world", "other_robot", T0, np.eye(4), static=True)
    with pytest.raises(TfLookupError, match="not connected: their roots are 'map' and 'world'"):
        chain.lookup("map", "other_robot", T0)
    assert not chain.can_transform("map", "other_robot", T0)
    assert issubclass(TfLookupError, LookupError)


def test_extrapolation_errors_say_which_side_and_tolerance_takes_the_nearest(chain):
    last = T0 + 2 * NS_PER_S
    with pytest.raises(TfLookupError, match=r"0\.100 s after the newest sample"):
        chain.lookup("map", "camera", last + NS_PER_S // 10)
    with pytest.raises(TfLookupError, match=r"0\.100 s before the oldest sample"):
        chain.lookup("camera", "map", T0 - NS_PER_S // 10)
    near = chain.lookup("map", "camera", last + NS_PER_S // 10, tolerance_ns=NS_PER_S // 5)
    np.testing.assert_allclose(near, chain.lookup("map", "camera", last), atol=1e-12)
    assert not chain.can_transform("map", "camera", last + 1)
    assert chain.can_transform("map", "camera", last)


def test_latest_common_time():
    buffer = TfBuffer()
    buffer.add("map", "odom", T0, map_from_odom(0.0))
    buffer.add("map", "odom", T0 + NS_PER_S, map_from_odom(1.0))
    buffer.add("odom", "base_link", T0, odom_from_base(0.0))
    buffer.add("odom", "base_link", T0 + 2 * NS_PER_S, odom_from_base(2.0))
    # map->odom ends at 1 s, so "latest" is 1 s: odom->base_link interpolated there.
    expected = map_from_odom(1.0) @ odom_from_base(1.0)
    np.testing.assert_allclose(buffer.lookup("map", "base_link", None), expected, atol=1e-12)


def test_old_samples_are_pruned_and_memory_is_bounded():
    buffer = TfBuffer(cache_s=1.0)
    for index in range(1000):  # 10 s at 100 Hz
        buffer.add("odom", "base_link", T0 + index * NS_PER_S // 100, odom_from_base(index / 100))
    samples = len(buffer._edges["base_link"].stamps_ns)
    assert samples <= 102
    last = T0 + 999 * NS_PER_S // 100
    np.testing.assert_allclose(buffer.lookup("odom", "base_link", last - NS_PER_S // 2), odom_from_base(9.49),
                               atol=1e-9)
    with pytest.raises(TfLookupError, match="before the oldest sample"):
        buffer.lookup("odom", "base_link", T0 + NS_PER_S)
    assert samples >= 100


def test_stamps_jumping_back_restart_the_edge():
    """A bag replayed again: its stamps start over, and lookups must follow them."""
    buffer = TfBuffer(cache_s=1.0)
    for index in range(300):
        buffer.add("odom", "base_link", T0 + index * NS_PER_S // 100, odom_from_base(index / 100))
    buffer.add("odom", "base_link", T0, odom_from_base(0.0))
    buffer.add("odom", "base_link", T0 + NS_PER_S // 100, odom_from_base(0.01))
    np.testing.assert_allclose(buffer.lookup("odom", "base_link", T0 + NS_PER_S // 200), odom_from_base(0.005),
                               atol=1e-12)
    assert not buffer.can_transform("odom", "base_link", T0 + 2 * NS_PER_S)


def test_out_of_order_samples_and_refused_edges():
    buffer = TfBuffer()
    for seconds in (1.0, 0.0, 0.5):
        buffer.add("odom", "base_link", T0 + int(seconds * NS_PER_S), odom_from_base(seconds))
    np.testing.assert_allclose(buffer.lookup("odom", "base_link", T0 + NS_PER_S // 4), odom_from_base(0.25),
                               atol=1e-12)
    with pytest.raises(ValueError, match="loop"):
        buffer.add("base_link", "odom", T0, np.eye(4))
    with pytest.raises(ValueError, match="4x4"):
        buffer.add("odom", "x", T0, np.full((4, 4), np.nan))
    buffer.add("map", "base_link", T0, np.eye(4))  # re-parenting replaces the edge, as in tf2
    assert buffer.can_transform("map", "base_link", T0)
    assert not buffer.can_transform("odom", "base_link", T0)


def test_message_conversions_round_trip():
    a_from_b = make_transform(Rotation.from_euler("zyx", [30, -20, 75], degrees=True).as_matrix(), [1.0, -2.0, 3.5])
    stamp = time_msg_from_ns(T0 + 123_456_789)
    message = transform_stamped_msg(stamp, "map", "odom", a_from_b)
    assert (message.header.frame_id, message.child_frame_id) == ("map", "odom")
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert message.transform.rotation.w >= 0  # x, y, z, w with the canonical sign
    np.testing.assert_allclose(matrix_from_transform_msg(message.transform), a_from_b, atol=1e-12)
    np.testing.assert_allclose(matrix_from_pose_msg(pose_msg_from_matrix(a_from_b)), a_from_b, atol=1e-12)
    quat = Rotation.from_matrix(a_from_b[:3, :3]).as_quat()
    pose = pose_msg_from_matrix(a_from_b)
    np.testing.assert_allclose([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w],
                               quat if quat[3] >= 0 else -quat)


def test_broadcasters_to_listener_over_dds():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from conftest import spin_until
    from pram_ros.ros.tf import StaticTfBroadcaster, TfBroadcaster, TfListener

    contexts, nodes, executors = [], [], []
    try:
        for name in ("tf_test_broadcaster", "tf_test_listener"):
            context = rclpy.Context()
            rclpy.init(context=context)
            contexts.append(context)
            nodes.append(rclpy.create_node(name, context=context))
            executors.append(SingleThreadedExecutor(context=context))
            executors[-1].add_node(nodes[-1])
        talker, listener_node = nodes
        static = StaticTfBroadcaster(talker)
        static.send_transform(transform_stamped_msg(time_msg_from_ns(T0), "base_link", "camera", BASE_FROM_CAMERA))
        static.send_transform(transform_stamped_msg(time_msg_from_ns(T0), "odom", "imu", np.eye(4)))
        dynamic = TfBroadcaster(talker)
        buffer = TfBuffer()
        # Subscribed after the static transforms went out: they must arrive latched.
        TfListener(listener_node, buffer)
        stamps = [T0 + index * NS_PER_S // 10 for index in range(3)]

        def received() -> bool:
            # Dynamic /tf is volatile: keep sending until discovery has matched the listener.
            dynamic.send_transform([transform_stamped_msg(time_msg_from_ns(stamp), "odom", "base_link",
                                                          odom_from_base((stamp - T0) / NS_PER_S))
                                    for stamp in stamps])
            executors[0].spin_once(timeout_sec=0.0)
            return buffer.can_transform("odom", "camera", stamps[1]) and buffer.can_transform("imu", "camera", T0)

        assert spin_until(listener_node, executors[1], received, timeout_s=20.0), f"frames: {buffer.frames()}"
        middle = (stamps[0] + stamps[1]) // 2
        expected = odom_from_base((middle - T0) / NS_PER_S) @ BASE_FROM_CAMERA
        np.testing.assert_allclose(buffer.lookup("odom", "camera", middle), expected, atol=1e-9)
        assert buffer.frames() == {"odom", "base_link", "camera", "imu"}
    finally:
        for executor, node, context in zip(executors, nodes, contexts):
            executor.shutdown()
            node.destroy_node()
            rclpy.shutdown(context=context)
