"""Camera images as ROS publishes them -> arrays the localizer takes.

In: a sensor_msgs/Image or sensor_msgs/CompressedImage, as a rosbags object (bags) or an
rclpy one (the node). Out: RGB uint8 [H x W x 3], or mono [H x W] (uint8, or uint16 for
16-bit mono and Bayer data). Raises ValueError with a one-line reason for what cannot be
decoded: depth and float images, unknown encodings, truncated data, corrupt JPEG/PNG.

Image encodings (sensor_msgs/image_encodings.hpp names): rgb8, bgr8, rgba8, bgra8, rgb16,
bgr16, rgba16, bgra16, mono8, mono16, 8UC1, 8UC3 (taken as bgr8, as cv_bridge does), the
YUV 4:2:2 packings (yuv422/uyvy, yuv422_yuy2/yuyv), nv21, and bayer_{rggb,bggr,gbrg,grbg}{8,16}.
CompressedImage: JPEG and PNG, whatever its `format` string says around them
("jpeg", "rgb8; jpeg compressed bgr8", ...); compressedDepth is refused.
"""

from __future__ import annotations

import cv2
import numpy as np

# name -> (channels, dtype) of the raw pixel array, and how to make RGB or mono of it.
_PLAIN = {
    "rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
    "rgb16": (3, np.uint16), "bgr16": (3, np.uint16), "rgba16": (4, np.uint16), "bgra16": (4, np.uint16),
    "mono8": (1, np.uint8), "mono16": (1, np.uint16), "8uc1": (1, np.uint8), "8uc3": (3, np.uint8),
}
_YUV422 = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
           "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2}
# OpenCV names a Bayer pattern by the second row's second and third pixels, so ROS's
# RGGB is OpenCV's BG (as cv_bridge maps them).
_BAYER = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB, "gbrg": cv2.COLOR_BayerGR2RGB,
          "grbg": cv2.COLOR_BayerGB2RGB}
BAYER_ENCODINGS = {f"bayer_{pattern}{bits}": (code, np.uint8 if bits == 8 else np.uint16)
                   for pattern, code in _BAYER.items() for bits in (8, 16)}
NOT_CAMERA_IMAGES = ("32fc1", "16uc1", "16sc1", "32fc", "64fc")  # depth and float data
IMAGE_ENCODINGS = sorted([*_PLAIN, *_YUV422, "nv21", *BAYER_ENCODINGS])


def decode_image(message) -> np.ndarray:
    """A sensor_msgs/Image or CompressedImage -> RGB uint8 or mono (see the module docstring)."""
    if hasattr(message, "format") and not hasattr(message, "encoding"):
        return decode_compressed(message)
    return decode_raw(message)


def decode_compressed(message) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG) -> RGB uint8, or mono uint8/uint16."""
    image_format = str(message.format).lower()
    if "compresseddepth" in image_format:
        raise ValueError(f"compressed image format {message.format!r}: a depth image, not a camera image")
    data = _data(message)
    if not len(data):
        raise ValueError(f"compressed image ({message.format!r}) has no data")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"compressed image ({message.format!r}, {len(data)} bytes) is not a readable JPEG or PNG")
    if image.ndim == 2 and image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"compressed image ({message.format!r}) decodes to {image.dtype} data, not a camera image")
    if image.ndim == 2:
        return image
    image = _to_uint8(image)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def decode_raw(message) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 [H x W x 3], or mono [H x W] (uint8 or uint16). Row
    padding (step) and endianness are honoured."""
    encoding = str(message.encoding).lower()
    height, width, step = int(message.height), int(message.width), int(message.step)
    if encoding.startswith(NOT_CAMERA_IMAGES):
        raise ValueError(f"image encoding {message.encoding!r} is depth or float data, not a camera image")
    if encoding in _PLAIN:
        channels, dtype = _PLAIN[encoding]
    elif encoding in _YUV422:
        channels, dtype = 2, np.uint8
    elif encoding == "nv21":
        channels, dtype = 1, np.uint8
    elif encoding in BAYER_ENCODINGS:
        channels, dtype = 1, BAYER_ENCODINGS[encoding][1]
    else:
        raise ValueError(f"unsupported image encoding {message.encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}")
    if width == 0 or height == 0:
        raise ValueError(f"zero-size image ({width}x{height})")
    rows_in_data = height * 3 // 2 if encoding == "nv21" else height  # NV21: a half-height chroma plane follows
    pixels = _pixels(message, encoding, width, rows_in_data, step, channels, dtype)
    if encoding in _YUV422:
        return cv2.cvtColor(pixels, _YUV422[encoding])
    if encoding == "nv21":
        return cv2.cvtColor(pixels[:, :, 0], cv2.COLOR_YUV2RGB_NV21)
    if encoding in BAYER_ENCODINGS:
        return _to_uint8(cv2.cvtColor(pixels[:, :, 0], BAYER_ENCODINGS[encoding][0]))
    if channels == 1:
        return pixels[:, :, 0]
    pixels = _to_uint8(pixels)
    if encoding.startswith("bgr") or encoding == "8uc3":
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def _pixels(message, encoding: str, width: int, rows: int, step: int, channels: int, dtype) -> np.ndarray:
    dtype = np.dtype(dtype).newbyteorder(">" if message.is_bigendian else "<")
    row_bytes = width * channels * dtype.itemsize
    data = _data(message)
    if step < row_bytes or len(data) < step * rows:
        raise ValueError(f"image {width}x{int(message.height)} {encoding}: {len(data)} bytes with step {step} "
                         "is too short")
    array = np.ascontiguousarray(data[: step * rows].reshape(rows, step)[:, :row_bytes])
    return array.view(dtype).reshape(rows, width, channels).astype(dtype.newbyteorder("="))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """16-bit colour -> 8-bit (the high byte, rounded)."""
    if image.dtype == np.uint8:
        return image
    return np.rint(image.astype(np.float32) / 257.0).astype(np.uint8)


def _data(message) -> np.ndarray:
    """The message's bytes as uint8 (rosbags gives an array, rclpy a sequence)."""
    data = message.data
    return data if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), dtype=np.uint8)


def compressed_topic(image_topic: str) -> str:
    """Where image_transport's compressed plugin publishes IMAGE: IMAGE/compressed."""
    return image_topic.rstrip("/") + "/compressed"


def recorded_image_topic(image_topic: str, topics: dict[str, str], source: str) -> str:
    """The topic holding IMAGE's frames among `topics` (name -> type): IMAGE itself, else
    its /compressed; ValueError naming the image topics there are."""
    if image_topic in topics:
        return image_topic
    if compressed_topic(image_topic) in topics:
        return compressed_topic(image_topic)
    images = sorted(t for t, kind in topics.items() if kind.endswith(("/Image", "/CompressedImage")))
    raise ValueError(f"{source}: no topic {image_topic}; its image topics: {', '.join(images) or 'none'}")


def camera_info_topic_of(image_topic: str) -> str:
    """The CameraInfo topic beside an image topic, as image_transport names them:
    /cam/image_raw and /cam/image_raw/compressed -> /cam/camera_info."""
    base = image_topic.rstrip("/").removesuffix("/compressed")  # see compressed_topic
    return base.rsplit("/", 1)[0] + "/camera_info" if "/" in base else "camera_info"
