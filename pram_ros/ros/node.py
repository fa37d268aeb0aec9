"""`pram_node` and `pram_lifecycle_node`: live relocalization from camera images against a PRAM map.

Both are thin: parameters are declared here from their one definition (params.py), and
`LocalizationIO` (localization_io.py) does the ROS input and output around `Localizer`.
`pram_node` loads the map and takes frames at once. `pram_lifecycle_node` is a managed
node for Nav2-style bring-up: configure loads the map and model, activate subscribes to
the camera, deactivate pauses, cleanup frees the map.

Localization runs on the process's main thread while the executor spins in a second one,
because torch's intra-op threads served it a third slower from another thread (XFeat p50
83-90 ms against 61-66 ms, measured).
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node

from pram_ros.localization import LocalizerConfig
from pram_ros.ros.localization_io import LocalizationIO
from pram_ros.ros.params import NodeParams, parameter_specs
from pram_ros.settings import Spec, check_value

def _descriptor(spec: Spec) -> ParameterDescriptor:
    """The ROS descriptor of a setting: its doc, and its range or choices."""
    descriptor = ParameterDescriptor(description=spec.doc)
    if spec.low is None:
        pass  # a bool or a string
    elif isinstance(spec.default, int):
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    else:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                              step=0.0)]
    if spec.choices is not None:
        descriptor.additional_constraints = spec.allowed
    return descriptor


def declare_params(node: Node) -> None:
    """Declare every parameter with its description and range; ValueError names a value
    out of range or of the wrong type."""
    for spec in parameter_specs():
        try:
            node.declare_parameter(spec.name, spec.default, _descriptor(spec))
        except ParameterException as error:
            raise ValueError(f"parameter {spec.name} refused: {error} (allowed: {spec.allowed})") from None


def read_params(node: Node) -> tuple[NodeParams, LocalizerConfig]:
    """The declared parameters' values, checked; ValueError names a bad one."""
    values = {}
    for spec in parameter_specs():
        value = node.get_parameter(spec.name).value
        check_value(spec, value, f"parameter {spec.name}")
        values[spec.name] = value
    node_names = {f.name for f in fields(NodeParams)}
    params = NodeParams(**{k: v for k, v in values.items() if k in node_names})
    config = LocalizerConfig(**{k: v for k, v in values.items() if k not in node_names})
    if not params.map_path:
        raise ValueError("parameter map_path is empty: give the map file (pram map build --out MAP)")
    return params, config


class PramNode(Node):
    """Loads the map and localizes from construction on."""

    def __init__(self) -> None:
        super().__init__("pram_node")
        declare_params(self)
        self.io_lock = threading.Lock()  # the localization loop holds it while it uses `io`
        self.io = LocalizationIO(self, *read_params(self))
        self.io.activate()
        self.get_logger().info(self.io.describe())

    def localizing(self) -> LocalizationIO | None:
        return self.io


class PramLifecycleNode(LifecycleNode):
    """The same node, managed: nothing is loaded until configure."""

    def __init__(self) -> None:
        super().__init__("pram_node")
        declare_params(self)
        self.io: LocalizationIO | None = None
        self.io_lock = threading.Lock()  # the localization loop holds it while it uses `io`

    def localizing(self) -> LocalizationIO | None:
        return self.io

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            io = LocalizationIO(self, *read_params(self))
        except (ValueError, OSError) as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        with self.io_lock:
            self.io = io
        self.get_logger().info(f"configured: {io.describe()}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.io.activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.io.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        with self.io_lock:  # waits for a frame in progress
            io, self.io = self.io, None
        if io is not None:
            io.destroy()
        del io
        # The map and model are freed, but glibc keeps the pages: hand them back, so that
        # cleanup lowers the process's memory and configure cycles do not ratchet it up.
        gc.collect()
        _malloc_trim()


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


SPIN_TIMEOUT_S = 0.1  # the executor's thread looks at `stop` this often


def localize_until_shutdown(node: PramNode | PramLifecycleNode, stop: threading.Event) -> None:
    """Localize the next frame, again and again, until `stop` or the context ends."""
    while not stop.is_set() and node.context.ok():
        io = node.localizing()
        if io is None:  # a lifecycle node not configured
            stop.wait(0.2)
            continue
        if not io.wake.wait(timeout=0.2):
            continue
        with node.io_lock:
            if node.localizing() is io:  # not cleaned up meanwhile
                io.process_next()


def _spin(executor: SingleThreadedExecutor, stop: threading.Event) -> None:
    """The executor's thread; it ends within SPIN_TIMEOUT_S of `stop`, before the main thread
    shuts the executor down (not while this thread waits in it)."""
    try:
        while not stop.is_set() and executor.context.ok():
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy.RCLError:
        # SIGINT can shut the context down between two waits: rcl then refuses the next
        # wait set. That is a shutdown too; anything else is not.
        if executor.context.ok():
            raise
    finally:
        stop.set()  # the localization loop ends with the executor


def missing_params_file(args: list[str]) -> str:
    """rcl's own error for a --params-file that is not there is a traceback: say it in one line."""
    for flag, value in zip(args, args[1:]):
        if flag == "--params-file" and not Path(value).is_file():
            return f"--params-file {value}: no such file"
    return ""


def run(node_class: type, argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv)
    problem = missing_params_file(args)
    if problem:
        sys.stderr.write(f"pram_node: {problem}\n")
        return 2
    rclpy.init(args=args)
    node = executor = spinner = None
    stop = threading.Event()
    try:
        node = node_class()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spinner = threading.Thread(target=_spin, args=(executor, stop), name="pram_executor", daemon=True)
        spinner.start()
        localize_until_shutdown(node, stop)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as error:
        # A refused parameter, or a map/model that cannot be used: say why, without a traceback.
        sys.stderr.write(f"pram_node: {error}\n")
        return 2
    finally:
        # The executor's thread ends first, then the executor, then the node: nothing is
        # destroyed while another thread uses it.
        stop.set()
        if spinner is not None:
            spinner.join(timeout=5.0)
        if executor is not None:
            if not executor.context.ok():
                # A signal shut the context down: rclpy's signal thread may still be triggering
                # the executor's SIGINT guard condition, and destroying it meanwhile crashed
                # the process (SIGSEGV in rcl_trigger_guard_condition, 1 of 6 test runs).
                time.sleep(0.2)
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`pram_node`: loads the map and localizes at once."""
    return run(PramNode, argv)


def main_lifecycle(argv: list[str] | None = None) -> int:
    """`pram_lifecycle_node`: a managed node (configure, activate, deactivate, cleanup)."""
    return run(PramLifecycleNode, argv)
