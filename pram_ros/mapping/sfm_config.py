"""SfM settings, apart from sfm.py (which imports pycolmap) so that the CLI can show their
choices and defaults without the import."""

from __future__ import annotations

from dataclasses import dataclass

UNPOSED_MAPPERS = ("incremental", "global")


@dataclass
class SfmConfig:
    """Pairing, matching and triangulation settings (defaults work on the demo world)."""

    pair_neighbors: int = 8  # with poses: covisible partners per image
    pair_max_angle_deg: float = 60.0  # with poses: max angle between optical axes
    # With poses: how far ahead a camera is assumed to look, and how close two cameras'
    # look-at points must be. None: the median scene depth from the pose check
    # (posecheck.py), and twice the look-at distance.
    pair_lookat_m: float | None = None
    pair_radius_m: float | None = None
    unposed_pairing: str = "sequential"  # without poses: "sequential" (video) or "exhaustive" (photos)
    sequential_window: int = 10  # without poses, sequential: neighbours in capture order
    match_ratio: float = 0.9  # Lowe ratio on mutual nearest neighbours, with poses
    # Without poses only the descriptors vouch for a match, and repetitive textures
    # (bricks, tiles) then warp the reconstruction: be strict.
    unposed_match_ratio: float = 0.7
    epipolar_max_px: float = 2.0  # with poses: Sampson distance gate
    min_pair_matches: int = 15
    max_reproj_error_px: float = 2.0  # filter for the final points (with poses)
    min_tri_angle_deg: float = 1.0
    unposed_max_reproj_error_px: float = 4.0  # COLMAP's defaults for incremental SfM
    unposed_min_tri_angle_deg: float = 1.5
    unposed_mapper: str = "incremental"  # without poses: "incremental" or "global" (GLOMAP; photo collections)
    num_threads: int = -1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.unposed_mapper not in UNPOSED_MAPPERS:
            raise ValueError(f"SfmConfig.unposed_mapper: expected one of {UNPOSED_MAPPERS}, got {self.unposed_mapper!r}")
