"""CPU inference runtimes for our torch networks: ONNX Runtime and OpenVINO.

In: a torch module and example inputs. Out: a `Session` whose `run(arrays)` returns the
module's outputs as numpy arrays, computed by the chosen runtime from the module exported
to ONNX (OpenVINO reads the same ONNX bytes, so its telemetry-sending converters are never
used; nothing is downloaded).

Exporting takes about a second per network and input size, at every start of a node or a
tool: the ONNX bytes are kept in the cache folder (pram_ros/cache.py), named by a hash of
everything the export depends on (the weights, the module's structure and source file, the
input shapes, torch's version).

Torch stays the reference and the fallback: callers catch `RuntimeUnavailable` and run the
module itself, with a log line saying why.

Precision: "f32", or "bf16" (OpenVINO only; where the CPU computes bf16 natively, e.g.
AVX512-BF16 or AMX; elsewhere OpenVINO keeps f32).
"""

from __future__ import annotations

import inspect
import io
import logging
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pram_ros.cache import cache_path, content_key, read_cached, write_cached

logger = logging.getLogger(__name__)

CPU_RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("f32", "bf16")


class RuntimeUnavailable(RuntimeError):
    """The runtime is not installed, or could not compile or run the network."""


ONNX_OPSET = 17
EXPORT_VERSION = 1  # bump when the export itself changes


def export_key(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], input_names: Sequence[str],
               output_names: Sequence[str], dynamic_axes: dict | None = None) -> str:
    """A hash of everything an export depends on: equal keys, equal ONNX."""
    try:
        source = Path(inspect.getsourcefile(type(module)) or "").read_bytes()
    except (OSError, TypeError):
        source = b""
    state = [(name, tensor.detach().cpu().float().contiguous().numpy()) for name, tensor in module.state_dict().items()]
    return content_key(torch.__version__, EXPORT_VERSION, ONNX_OPSET, repr(module), source,
                       [tuple(x.shape) for x in example_inputs], list(input_names), list(output_names),
                       sorted((dynamic_axes or {}).items()), *[part for pair in state for part in pair])


def onnx_bytes(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], input_names: Sequence[str],
               output_names: Sequence[str], dynamic_axes: dict | None = None, cache: bool = True) -> bytes:
    """The module exported to ONNX (opset 17, TorchScript exporter), from the cache when it
    was exported before."""
    path = None
    if cache:
        path = cache_path("onnx", export_key(module, example_inputs, input_names, output_names, dynamic_axes),
                          ".onnx")
        cached = read_cached(path)
        if cached:
            return cached
    model = _export(module, example_inputs, input_names, output_names, dynamic_axes)
    if path is not None:
        write_cached(path, model)
    return model


def _export(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], input_names: Sequence[str],
            output_names: Sequence[str], dynamic_axes: dict | None) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are about shapes we fix per session
        torch.onnx.export(module, example_inputs, buffer, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=ONNX_OPSET,
                          dynamo=False)
    return buffer.getvalue()


class Session:
    """One compiled network: `run([array, ...]) -> [array, ...]`, in the export's input order.
    Safe to call from several threads (one call at a time)."""

    runtime = ""

    def __init__(self, precision: str):
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self._lock = threading.Lock()

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            return self._run([np.ascontiguousarray(a, dtype=np.float32) for a in inputs])

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


class OnnxRuntimeSession(Session):
    runtime = "onnxruntime"

    def __init__(self, model: bytes, num_threads: int, precision: str = "f32"):
        super().__init__(precision)
        if precision != "f32":
            raise RuntimeUnavailable("onnxruntime runs these networks in f32 only")
        try:
            import onnxruntime
        except ImportError as error:
            raise RuntimeUnavailable(f"onnxruntime is not installed ({error})") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, int(num_threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        # Waiting threads that spin take the cores torch's work between networks needs
        # (2 cores, XFeat: features p50 32 ms spinning, 28 ms not).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise RuntimeUnavailable(f"onnxruntime cannot load the network ({_one_line(error)})") from None
        self._names = [i.name for i in self._session.get_inputs()]

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, dict(zip(self._names, inputs)))


class OpenVinoSession(Session):
    runtime = "openvino"

    def __init__(self, model: bytes, num_threads: int, precision: str = "f32"):
        super().__init__(precision)
        try:
            import openvino
        except ImportError as error:
            raise RuntimeUnavailable(f"openvino is not installed ({error})") from None
        try:
            core = openvino.Core()
            compiled = core.compile_model(core.read_model(model, b""), "CPU", {
                "INFERENCE_NUM_THREADS": max(1, int(num_threads)),
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": precision,
            })
            self._request = compiled.create_infer_request()
            self._outputs = len(compiled.outputs)
        except Exception as error:  # openvino raises RuntimeError and its own types
            raise RuntimeUnavailable(f"openvino cannot compile the network ({_one_line(error)})") from None

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        self._request.infer(inputs)
        # The request reuses its output buffers on the next call: copy.
        return [np.array(self._request.get_output_tensor(i).data) for i in range(self._outputs)]


def create_session(runtime: str, model: bytes, num_threads: int, precision: str = "f32") -> Session:
    if runtime == "onnxruntime":
        return OnnxRuntimeSession(model, num_threads, precision)
    if runtime == "openvino":
        return OpenVinoSession(model, num_threads, precision)
    raise ValueError(f"runtime: expected one of {CPU_RUNTIMES}, got {runtime!r}")


def cpu_computes_bf16() -> bool:
    """Whether OpenVINO reports native bf16 on this CPU (False when openvino is missing)."""
    try:
        import openvino

        return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no openvino, or no CPU plugin
        return False


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else type(error).__name__
