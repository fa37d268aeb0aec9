"""Stamps and TUM pose files.

In/out: `poses.tum`, `timestamp tx ty tz qx qy qz qw` per line, world_from_cam [N x 4 x 4]
with OpenCV camera axes, stamps as int64 nanoseconds; written exactly from integer
nanoseconds (`format_stamp`), read back without a float round trip (`parse_stamp`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation


def format_stamp(stamp_ns: int) -> str:
    """Integer nanoseconds as exact decimal seconds, e.g. 1700000000.100000000."""
    stamp_ns = int(stamp_ns)
    return f"{stamp_ns // 10**9}.{stamp_ns % 10**9:09d}"


def parse_stamp(text: str) -> int:
    """Decimal seconds (as written by format_stamp, or any TUM file) to integer nanoseconds."""
    whole, _, fraction = text.strip().partition(".")
    fraction = (fraction + "000000000")[:9]
    sign = -1 if whole.startswith("-") else 1
    return int(whole) * 10**9 + sign * int(fraction)


def save_tum(path: Path, stamps_ns: np.ndarray, world_from_cam: np.ndarray) -> None:
    """Write poses [N x 4 x 4] with stamps [N] (int ns) as TUM text (quaternion with qw >= 0)."""
    world_from_cam = np.asarray(world_from_cam, float)
    quats = Rotation.from_matrix(world_from_cam[:, :3, :3]).as_quat()
    quats[quats[:, 3] < 0] *= -1
    lines = []
    for stamp, pose, quat in zip(stamps_ns, world_from_cam, quats):
        values = " ".join(f"{v:.9f}" for v in (*pose[:3, 3], *quat))
        lines.append(f"{format_stamp(int(stamp))} {values}\n")
    Path(path).write_text("".join(lines))


def load_tum(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(stamps_ns int64 [N], world_from_cam float64 [N x 4 x 4]) from a TUM file ('#' lines
    skipped). A bad line is refused naming the file and line: a field that is not a number,
    NaN or infinity, a quaternion of (near) zero length; quaternions are normalised."""
    path = Path(path)
    stamps, poses = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{path}:{number}"
        if len(fields) != 8:
            raise ValueError(f"{where}: expected 8 fields 'timestamp tx ty tz qx qy qz qw', got {len(fields)}")
        try:
            stamps.append(parse_stamp(fields[0]))
        except ValueError:
            raise ValueError(f"{where}: the timestamp {fields[0]!r} is not decimal seconds") from None
        values = np.zeros(7)
        for column, (name, text) in enumerate(zip(("tx", "ty", "tz", "qx", "qy", "qz", "qw"), fields[1:])):
            try:
                values[column] = float(text)
            except ValueError:
                raise ValueError(f"{where}: {name} {text!r} is not a number") from None
            if not np.isfinite(values[column]):
                raise ValueError(f"{where}: {name} is {text}")
        norm = np.linalg.norm(values[3:])
        if norm < 1e-6:
            raise ValueError(f"{where}: the quaternion (qx qy qz qw) has zero length")
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_quat(values[3:] / norm).as_matrix()
        pose[:3, 3] = values[:3]
        poses.append(pose)
    return np.array(stamps, dtype=np.int64), np.array(poses).reshape(-1, 4, 4)
