"""Where a `pram view` recording goes: an .rrd file, rerun's web viewer, or both.

In: the output choices of `pram view`. Out: a `rerun.RecordingStream` whose sinks are a
file and/or a gRPC server that buffers everything logged (a browser that connects late
still gets the map), and the web viewer's URL. Nothing here opens a window: the machines
this runs on often have no display.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from pathlib import Path

import rerun as rr

logger = logging.getLogger(__name__)

APPLICATION_ID = "pram_view"
# What the gRPC server keeps for late viewers; the static map is never dropped.
SERVER_MEMORY_LIMIT = "25%"


def web_viewer_url(web_port: int, grpc_uri: str) -> str:
    """The page that opens the viewer on the served recording."""
    return f"http://localhost:{web_port}/?url={urllib.parse.quote(grpc_uri, safe=':/')}"


def open_recording(save: Path | None, web: bool, web_port: int,
                   grpc_port: int) -> tuple[rr.RecordingStream, str | None]:
    """A recording writing to `save` (.rrd) and/or served to the web viewer; -> (recording, URL or None)."""
    if save is None and not web:
        raise ValueError("pram view needs --save FILE.rrd or --web")
    recording = rr.RecordingStream(APPLICATION_ID)
    sinks = []
    if save is not None:
        save = Path(save)
        if not save.parent.is_dir():
            raise FileNotFoundError(f"{save}: the folder {save.parent} does not exist")
        sinks.append(rr.FileSink(str(save)))
    if web:
        sinks.append(rr.GrpcServerSink(port=grpc_port, server_memory_limit=SERVER_MEMORY_LIMIT))
    recording.set_sinks(*sinks)
    if not web:
        return recording, None
    grpc_uri = f"rerun+http://localhost:{grpc_port}/proxy"
    try:
        rr.serve_web_viewer(web_port=web_port, open_browser=False, connect_to=grpc_uri)
    except Exception as error:  # the bindings raise plain exceptions, e.g. for a port in use
        raise RuntimeError(f"cannot serve the web viewer on port {web_port}: {error}") from None
    return recording, web_viewer_url(web_port, grpc_uri)


def close_recording(recording: rr.RecordingStream) -> None:
    """Flush everything to the sinks (the .rrd file is complete after this)."""
    recording.flush()
    recording.disconnect()


def serve_until_interrupted(poll_s: float = 0.5) -> None:
    """Keep the process, and with it the servers, alive until Ctrl-C (SIGINT)."""
    try:
        while True:
            time.sleep(poll_s)
    except KeyboardInterrupt:
        logger.info("stopping the viewer's servers")
