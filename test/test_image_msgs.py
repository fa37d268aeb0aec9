"""Camera images as ROS users publish them: every encoding and CompressedImage decodes to
the RGB the camera saw; what is not a camera image is refused with a one-line reason."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from pram_ros.io.image_msgs import IMAGE_ENCODINGS, camera_info_topic_of, decode_image

TYPES = get_typestore(Stores.ROS2_JAZZY).types
HEIGHT, WIDTH = 48, 64


def _scene() -> np.ndarray:
    """A smooth RGB image with distinct channels (demosaicing and chroma subsampling are
    exact on flat areas, so errors come from mistakes, not from detail)."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    red = 40 + 160 * u / WIDTH
    green = 200 - 120 * v / HEIGHT
    blue = np.full_like(u, 90.0)
    return np.rint(np.stack([red, green, blue], axis=2)).astype(np.uint8)


def _header():
    return TYPES["std_msgs/msg/Header"](stamp=TYPES["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                        frame_id="camera_optical_frame")


def image_message(encoding: str, pixels: np.ndarray, bigendian: bool = False, pad: int = 0):
    height, width = pixels.shape[:2]
    rows = height
    if bigendian:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">"))
    if encoding == "nv21":  # the chroma plane below the image
        height = rows * 2 // 3
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(rows, -1)
    rows = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
    return TYPES["sensor_msgs/msg/Image"](header=_header(), height=height, width=width, encoding=encoding,
                                          is_bigendian=int(bigendian), step=rows.shape[1], data=rows.ravel())


def _yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 video-range Y, U, V (Y in 16..235), what cameras send and cv_bridge decodes."""
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)  # full range
    y, cr, cb = ycrcb[:, :, 0], ycrcb[:, :, 1], ycrcb[:, :, 2]
    return 16 + y * 219 / 255, 128 + (cb - 128) * 224 / 255, 128 + (cr - 128) * 224 / 255


def _packed_422(rgb: np.ndarray, order: str) -> np.ndarray:
    y, u, v = _yuv(rgb)
    u2 = (u[:, 0::2] + u[:, 1::2]) / 2
    v2 = (v[:, 0::2] + v[:, 1::2]) / 2
    planes = {"Y0": y[:, 0::2], "Y1": y[:, 1::2], "U": u2, "V": v2}
    names = ["U", "Y0", "V", "Y1"] if order == "uyvy" else ["Y0", "U", "Y1", "V"]
    packed = np.stack([planes[n] for n in names], axis=2).reshape(rgb.shape[0], rgb.shape[1], 2)
    return np.rint(packed).astype(np.uint8)


def _nv21(rgb: np.ndarray) -> np.ndarray:
    y, u, v = _yuv(rgb)
    vu = np.stack([v, u], axis=2)
    height, width = rgb.shape[:2]
    vu = vu.reshape(height // 2, 2, width // 2, 2, 2).mean(axis=(1, 3))
    return np.rint(np.concatenate([y, vu.reshape(height // 2, width)], axis=0)).astype(np.uint8)[:, :, None]


def _bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.zeros(rgb.shape[:2], rgb.dtype)
    for index, name in enumerate(pattern):
        row, col = divmod(index, 2)
        mosaic[row::2, col::2] = rgb[row::2, col::2, channel[name]]
    return mosaic[:, :, None]


def encoded(encoding: str, rgb: np.ndarray) -> np.ndarray:
    """The raw pixel array a camera driver would publish for this RGB image (written here
    independently of the decoder under test; tools/encoding_recall.py uses it too)."""
    rgb16 = rgb.astype(np.uint16) * 257
    shape = rgb.shape[:2] + (1,)
    alpha8, alpha16 = np.full(shape, 255, np.uint8), np.full(shape, 65535, np.uint16)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
    table = {
        "rgb8": rgb, "bgr8": rgb[:, :, ::-1], "8uc3": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, alpha8], 2), "bgra8": np.concatenate([rgb[:, :, ::-1], alpha8], 2),
        "rgb16": rgb16, "bgr16": rgb16[:, :, ::-1], "rgba16": np.concatenate([rgb16, alpha16], 2),
        "bgra16": np.concatenate([rgb16[:, :, ::-1], alpha16], 2),
        "mono8": gray, "8uc1": gray, "mono16": gray.astype(np.uint16) * 257,
        "yuv422": _packed_422(rgb, "uyvy"), "uyvy": _packed_422(rgb, "uyvy"),
        "yuv422_yuy2": _packed_422(rgb, "yuyv"), "yuyv": _packed_422(rgb, "yuyv"), "nv21": _nv21(rgb),
    }
    if encoding.startswith("bayer_"):
        pattern, bits = encoding[6:10], encoding[10:]
        return _bayer(rgb if bits == "8" else rgb16, pattern)
    return np.ascontiguousarray(table[encoding])


@pytest.mark.parametrize("encoding", IMAGE_ENCODINGS)
def test_every_encoding_decodes_to_the_image_the_camera_saw(encoding):
    rgb = _scene()
    message = image_message(encoding, encoded(encoding, rgb), pad=3 if encoding.endswith("8") else 0)
    decoded = decode_image(message)
    mono = encoding in ("mono8", "mono16", "8uc1")
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if mono else rgb
    if encoding == "mono16":
        assert decoded.dtype == np.uint16
        decoded = np.rint(decoded / 257.0).astype(np.uint8)
    assert decoded.dtype == np.uint8 and decoded.shape == expected.shape
    # Away from the border (demosaicing) the image is the one encoded; a swapped channel,
    # pattern or byte order is off by tens of grey levels.
    error = np.abs(decoded.astype(np.int32) - expected.astype(np.int32))[2:-2, 2:-2]
    exact = encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "8uc3", "mono8", "8uc1", "rgb16", "bgr16", "rgba16",
                         "bgra16", "mono16")
    assert error.max() <= (0 if exact else 6), f"{encoding}: max error {error.max()}"


def test_big_endian_16_bit_and_row_padding_are_honoured():
    rgb16 = _scene().astype(np.uint16) * 257
    message = image_message("rgb16", rgb16, bigendian=True)
    assert np.array_equal(decode_image(message), _scene())


def test_compressed_images_decode_as_jpeg_and_png():
    rgb = _scene()
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for image_format, extension, tolerance in (("rgb8; jpeg compressed bgr8", ".jpg", 8), ("png", ".png", 0)):
        data = cv2.imencode(extension, bgr)[1].ravel()
        message = TYPES["sensor_msgs/msg/CompressedImage"](header=_header(), format=image_format, data=data)
        decoded = decode_image(message)
        assert decoded.shape == rgb.shape
        assert np.abs(decoded.astype(int) - rgb.astype(int)).mean() <= tolerance / 4
        assert np.abs(decoded.astype(int) - rgb.astype(int)).max() <= max(tolerance * 3, 0)
    mono16 = (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257)
    message = TYPES["sensor_msgs/msg/CompressedImage"](header=_header(), format="mono16; png compressed mono16",
                                                      data=cv2.imencode(".png", mono16)[1].ravel())
    assert np.array_equal(decode_image(message), mono16)


def test_what_is_not_a_camera_image_is_refused_with_a_reason():
    depth = np.ones((HEIGHT, WIDTH, 1), np.float32)
    with pytest.raises(ValueError, match="32FC1.*not a camera image"):
        decode_image(image_message("32FC1", depth))
    with pytest.raises(ValueError, match="unsupported image encoding 'hsv8'"):
        decode_image(image_message("hsv8", _scene()))
    short = image_message("rgb8", _scene())
    short.data = short.data[:-10]
    with pytest.raises(ValueError, match="too short"):
        decode_image(short)
    compressed = TYPES["sensor_msgs/msg/CompressedImage"]
    with pytest.raises(ValueError, match="not a readable JPEG or PNG"):
        decode_image(compressed(header=_header(), format="jpeg", data=np.frombuffer(b"not a jpeg", np.uint8)))
    with pytest.raises(ValueError, match="depth"):
        decode_image(compressed(header=_header(), format="16UC1; compressedDepth png",
                                data=np.zeros(4, np.uint8)))


def test_rclpy_messages_decode_like_bag_messages():
    from sensor_msgs.msg import CompressedImage, Image

    rgb = _scene()
    bag = image_message("bgr8", np.ascontiguousarray(rgb[:, :, ::-1]))
    live = Image(height=bag.height, width=bag.width, encoding="bgr8", is_bigendian=0, step=bag.step,
                 data=bytes(bag.data))
    assert np.array_equal(decode_image(live), rgb)
    jpeg = CompressedImage(format="jpeg", data=cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes())
    assert np.array_equal(decode_image(jpeg), rgb)


def test_the_camera_info_topic_sits_beside_the_image_topic():
    assert camera_info_topic_of("/camera/image_raw") == "/camera/camera_info"
    assert camera_info_topic_of("/camera/image_raw/compressed") == "/camera/camera_info"
    assert camera_info_topic_of("image") == "camera_info"
