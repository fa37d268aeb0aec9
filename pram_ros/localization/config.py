"""LocalizerConfig: every localizer parameter, defined once with its doc and valid range.

The node declares these as ROS parameters (with descriptions and ranges), `config/pram.yaml`
lists them (a test checks it), and `pram params` prints them: adding a parameter means
adding it here and to config/pram.yaml. Groups: recognition, registration, gate, tracking,
continuity.
"""

from __future__ import annotations

from dataclasses import dataclass

from pram_ros.settings import setting, validate


@dataclass
class LocalizerConfig:
    # -- recognition --------------------------------------------------------------------------
    max_keypoints: int = setting(
        1024, "Keypoints per frame used for recognition and matching (the best-scoring ones).", "recognition",
        low=64, high=8192)
    top_landmarks: int = setting(
        3, "Most-voted landmarks whose points are pooled into one PnP.", "recognition", low=1, high=64)
    min_candidates: int = setting(
        48, "Fewer keypoints labelled with the top landmarks than this: match every non-background keypoint "
        "(background is over-called on views the map barely covers; the gate guards the pose).",
        "recognition", low=0, high=100000)

    widen_landmarks: int = setting(
        12, "When the top landmarks fail the gate on a map too large to match whole (widen_max_points): match "
        "every keypoint against this many landmarks, in the order of recognition's probability mass; 0 skips "
        "this step.", "recognition", low=0, high=100000)
    widen_max_points: int = setting(
        20000, "When the landmarks fail the gate, a map with at most this many points is matched whole (on a "
        "small map that costs about what recognition does); 0 never.", "recognition", low=0, high=100000000)

    # -- registration -------------------------------------------------------------------------
    match_ratio: float = setting(
        0.9, "Ratio test of descriptor matching (also against a map point's look-alike twin).", "registration",
        low=0.01, high=1.0)
    ransac_max_error_px: float = setting(
        8.0, "PnP RANSAC threshold of a relocalization, in pixels.", "registration", low=0.5, high=50.0)
    twin_min_distance_m: float = setting(
        0.3, "Repeated textures: a match must beat, by match_ratio, the most similar map point at least this "
        "far away (its twin), even outside the chosen landmarks.", "registration", low=0.0, high=1000.0)
    landmark_matching: str = setting(
        "pooled", "pooled: the keypoints labelled with the recognized landmarks against all their points; "
        "per_landmark: each landmark's points against its own keypoints first (faster, but trusts the labels), "
        "pooled when that fails the gate.", "registration", choices=("pooled", "per_landmark"))
    refine_pose: bool = setting(
        True, "Register a full frame's pose once more against every map point it sees, matched near their "
        "projections (steadier under changed lighting).", "registration")
    refine_rounds: int = setting(
        3, "Refinement rounds at most, each from the last round's pose, while the inliers grow.", "registration",
        low=1, high=20)

    # -- gate ---------------------------------------------------------------------------------
    min_inliers: int = setting(30, "Gate: PnP inliers for a relocalization.", "gate", low=6, high=10000)
    min_inlier_ratio: float = setting(0.2, "Gate: inliers / candidate matches.", "gate", low=0.01, high=1.0)
    min_track_inliers: int = setting(50, "Gate: PnP inliers for a tracked or refined frame.", "gate",
                                     low=6, high=10000)

    # -- tracking -----------------------------------------------------------------------------
    tracking: bool = setting(True, "Track frame to frame; false relocalizes every frame.", "tracking")
    track_radius_px: float = setting(
        10.0, "Guided matching: a projected map point's keypoint lies within this many pixels.", "tracking",
        low=0.5, high=200.0)
    track_ratio: float = setting(0.9, "Ratio test of guided matching.", "tracking", low=0.01, high=1.0)
    track_ransac_max_error_px: float = setting(
        4.0, "PnP RANSAC threshold of tracked and refined frames, in pixels.", "tracking", low=0.5, high=50.0)
    klt_frames: int = setting(
        4, "Frames in a row tracked by optical flow of the last inliers (no feature extraction) before a full "
        "frame; 0 off.", "tracking", low=0, high=1000)
    klt_min_inlier_ratio: float = setting(
        0.6, "An optical-flow frame must keep this share of the followed inliers, else the flow slipped and "
        "the frame takes the full pipeline.", "tracking", low=0.01, high=1.0)
    klt_min_kept_ratio: float = setting(
        0.4, "An optical-flow frame must keep this share of the last frame's inliers as its own inliers, else "
        "the view changed too much for the flow and the frame takes the full pipeline.", "tracking",
        low=0.0, high=1.0)
    klt_max_baseline_ratio: float = setting(
        0.25, "An optical-flow frame's camera may have moved at most this share of its points' median depth "
        "since the frame it follows; beyond it image patches change shape, the flow's pixels drift and its "
        "pose is centimetres off, so the frame takes the full pipeline.", "tracking", low=0.0, high=10.0)
    track_recheck_ratio: float = setting(
        0.5, "A tracked frame with fewer inliers than this share of the track's most since the last "
        "relocalization is relocalized too, and the pose with more inliers is kept; 0 off.", "tracking",
        low=0.0, high=1.0)
    reverify_every: int = setting(
        10, "Tracked frames between recognition checks of the tracked landmarks; 0 never.", "tracking",
        low=0, high=10000)

    # -- continuity ---------------------------------------------------------------------------
    jump_distance_m: float = setting(
        0.5, "A localized frame this far from the last accepted pose is a jump (a look-alike place or a "
        "kidnapped camera), reported only once jump_confirm_frames more frames agree.", "continuity",
        low=0.01, high=1000.0)
    jump_angle_deg: float = setting(
        30.0, "A localized frame turned this much from the last accepted pose is a jump.", "continuity",
        low=0.1, high=180.0)
    jump_memory_frames: int = setting(
        5, "Frames after the last accepted pose during which jumps are checked (longer lost, the camera may "
        "really have moved that far).", "continuity", low=0, high=100000)
    jump_confirm_frames: int = setting(
        2, "Further frames that must agree before a jump is reported (LOST until then); 0 off. A jump whose "
        "view changed from the camera's previous frame (a kidnap, no frame dropped between) is reported at once.",
        "continuity", low=0, high=100)
    continuity_min_inliers: int = setting(
        100, "Epipolar inliers between consecutive frames' keypoints that make them one continuous view; a far "
        "pose while the view stays continuous is a look-alike, held however many frames agree; 0 off.",
        "continuity", low=0, high=10000)
    jump_min_shared_points: int = setting(
        12, "Geometric jump test: a pose far from the last accepted one whose view shares at least this many "
        "of its inlier map points with the accepted frame's keypoints is accepted at once when those points, "
        "projected with the accepted pose, land on the accepted frame's keypoints (a real jump), and is a "
        "look-alike when they do not; 0 off.", "continuity", low=0, high=10000)
    continuity_step_m: float = setting(
        0.1, "How far the camera may move per frame while the view stays continuous.", "continuity",
        low=0.0, high=100.0)
    continuity_step_deg: float = setting(
        10.0, "How far the camera may turn per frame while the view stays continuous.", "continuity",
        low=0.0, high=180.0)
    continuity_speed_mps: float = setting(
        1.0, "How fast the camera may move (m/s, between image stamps): every jump test allows it.",
        "continuity", low=0.0, high=100.0)
    continuity_turn_dps: float = setting(
        100.0, "How fast the camera may turn (deg/s, between image stamps): every jump test allows it.",
        "continuity", low=0.0, high=3600.0)

    def __post_init__(self) -> None:
        validate(self)
