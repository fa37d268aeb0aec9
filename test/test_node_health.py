"""pram_node's /diagnostics verdict, from the frame events alone (no DDS)."""

import pytest

from pram_ros.localization import Reason
from pram_ros.ros.health import ERROR, OK, WARN, Health


def test_diagnostics_say_what_is_wrong_and_escalate_when_nothing_localizes():
    health = Health("/camera/image_raw", stall_warn_s=3.0, lost_error_s=10.0, now_s=0.0)
    verdict = health.verdict(2.0)
    assert verdict.level == WARN and "no images on /camera/image_raw" in verdict.message

    health.received(2.0)
    health.processed("RELOCALIZED", True, Reason.NONE, "", 2.1)
    assert health.verdict(2.5).level == OK

    # Frames keep arriving but every one is rejected: WARN with the reason, not a stale OK.
    for step in range(5):
        health.received(3.0 + step)
        health.rejected(Reason.UNDECODABLE_IMAGE, "unsupported image encoding 'hsv8'", 3.0 + step)
    verdict = health.verdict(7.5)
    assert verdict.level == WARN and "rejected" in verdict.message and "hsv8" in verdict.message, verdict

    # Processed and LOST: WARN with the reason at first, ERROR after lost_error_s without a pose.
    health.received(8.0)
    health.processed("LOST", False, Reason.GATE_FAILED, "gate: 7 inliers of 90", 8.0)
    verdict = health.verdict(8.5)
    assert verdict.level == WARN and "GATE_FAILED" in verdict.message, verdict
    for second in range(9, 13):
        health.received(float(second))
        health.processed("LOST", False, Reason.NOT_RECOGNIZED, "no landmark recognized", float(second))
    verdict = health.verdict(12.5)
    assert verdict.level == ERROR and "not localized for 10 s" in verdict.message, verdict
    assert "NOT_RECOGNIZED" in verdict.message

    # The camera stops: WARN that images stopped, whatever came before.
    verdict = health.verdict(20.0)
    assert verdict.level == WARN and "no images on /camera/image_raw for 8 s" in verdict.message, verdict
    counts = health.snapshot()
    assert (counts.received, counts.processed, counts.rejected, counts.localized) == (11, 6, 5, 1), counts


def test_frames_that_arrive_but_are_never_processed_are_a_warning():
    health = Health("image", stall_warn_s=3.0, lost_error_s=10.0, now_s=0.0)
    health.received(1.0)
    health.processed("TRACKED", True, Reason.NONE, "", 1.0)
    for second in range(2, 6):
        health.received(float(second))
        health.dropped()
    verdict = health.verdict(5.0)
    assert verdict.level == WARN and "none was processed for 4 s" in verdict.message, verdict
    assert health.snapshot().dropped == 4


def test_waiting_frames_are_taken_in_order_and_each_knows_the_drops_before_it():
    """While tracking the localizer takes every frame in order; a full queue drops the oldest,
    and the frame after it carries the drop (continuity reads it as "not adjacent"); while
    lost only the newest is taken."""
    from pram_ros.ros.frame_queue import FrameQueue

    drops = []
    queue = FrameQueue(3, lambda: drops.append(1))
    for frame in range(5):  # 0 and 1 dropped: 3 wait
        queue.put(frame)
    assert len(queue) == 3 and len(drops) == 2
    assert queue.take() == (2, 2)
    assert queue.take() == (3, 0)
    for frame in range(5, 8):  # 4 dropped
        queue.put(frame)
    assert queue.take() == (5, 1) and len(drops) == 3
    assert queue.take(newest_only=True) == (7, 1) and len(drops) == 4  # 6 dropped for the newest
    assert queue.take() is None
    queue.put(8)
    queue.clear()
    assert queue.take() is None and len(drops) == 4
    with pytest.raises(ValueError, match="at least 1"):
        FrameQueue(0, lambda: None)
