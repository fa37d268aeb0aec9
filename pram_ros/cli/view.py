"""`pram view`: a map, a report or a live pram_node in rerun's viewer (an .rrd file or a browser).

  pram view --map MAP --save map.rrd          the map: points by landmark, boxes, cameras
  pram view --report DIR --web [--port N]     a `pram eval` report or `pram localize` output,
                                              served to a browser until Ctrl-C
  pram view --live [--node pram_node] --web   a running node's pose, status, map points and
                                              debug image
--map combines with --report or --live (the trajectory drawn in its map). Without --save
or --web nothing is shown: this machine may have no display, so no window is opened.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pram_ros.cli.argtypes import port, positive_float

# rerun's own defaults, so its docs apply as they are; here, not in recording.py, so that
# building the `pram` parser does not import rerun.
DEFAULT_WEB_PORT = 9090
DEFAULT_GRPC_PORT = 9876
NO_OUTPUT = "pram view: give --save FILE.rrd (open it with `rerun FILE.rrd`) or --web (a viewer in the browser)"


def add_view_command(commands) -> None:
    """Register `pram view` on the `pram` subparsers."""
    view = commands.add_parser("view", help="a map, a report or a live pram_node in rerun's viewer "
                                            "(an .rrd file or a browser), where RViz is missing")
    what = view.add_argument_group("what to show (at least one; --map combines with --report or --live)")
    what.add_argument("--map", help="map file: points coloured by landmark, landmark boxes, the mapping cameras")
    what.add_argument("--images", help="--map: the map's images, when not where the map was built")
    what.add_argument("--no-images", action="store_true", help="--map: draw the cameras without their images")
    what.add_argument("--report", help="a `pram eval` report folder or a `pram localize` output folder")
    what.add_argument("--gt", help="--report: TUM ground truth (default: poses.tum beside the report's images "
                                   "or bag; a `pram localize` output has none)")
    what.add_argument("--live", action="store_true", help="subscribe to a running pram_node until Ctrl-C")
    what.add_argument("--node", default="pram_node", help="--live: the node's name (default pram_node)")
    what.add_argument("--duration", type=positive_float, help="--live: stop after this many seconds")
    out = view.add_argument_group("where to (at least one)")
    out.add_argument("--save", help="write a rerun recording (.rrd)")
    out.add_argument("--web", action="store_true", help="serve the web viewer and print its URL; blocks until Ctrl-C")
    out.add_argument("--port", type=port, default=DEFAULT_WEB_PORT,
                     help=f"--web: HTTP port (default {DEFAULT_WEB_PORT})")
    out.add_argument("--grpc-port", type=port, default=DEFAULT_GRPC_PORT,
                     help=f"--web: port the viewer streams the data from (default {DEFAULT_GRPC_PORT})")
    view.set_defaults(run=cmd_view)


def _check(args: argparse.Namespace) -> None:
    if not (args.map or args.report or args.live):
        raise ValueError("pram view: give --map MAP, --report DIR or --live")
    if args.report and args.live:
        raise ValueError("pram view: --report and --live do not combine (--map does, with either)")
    if args.gt and not args.report:
        raise ValueError("pram view: --gt goes with --report")
    if (args.images or args.no_images) and not args.map:
        raise ValueError("pram view: --images and --no-images go with --map")
    if args.map and not Path(args.map).is_file():
        raise FileNotFoundError(f"{args.map}: no such map file")
    if args.report and not Path(args.report).is_dir():
        raise FileNotFoundError(f"{args.report}: no such report folder")
    if args.gt and not Path(args.gt).is_file():
        raise FileNotFoundError(f"{args.gt}: no such ground-truth file")


def cmd_view(args: argparse.Namespace) -> int:
    if not args.save and not args.web:
        print(NO_OUTPUT)
        return 2
    _check(args)
    # Inputs are read before any sink opens: a bad input leaves no half-written .rrd behind.
    pram_map = track = None
    if args.map:
        from pram_ros.mapping.mapfile import load_map

        pram_map = load_map(Path(args.map))
    if args.report:
        from pram_ros.viewer.report_data import load_frames

        track = load_frames(Path(args.report), Path(args.gt) if args.gt else None)

    from pram_ros.viewer.recording import close_recording, open_recording, serve_until_interrupted

    recording, url = open_recording(Path(args.save) if args.save else None, args.web, args.port, args.grpc_port)
    shown = []
    if pram_map is not None:
        from pram_ros.viewer.map_view import log_map

        log_map(recording, pram_map, Path(args.images) if args.images else None, with_images=not args.no_images)
        shown.append(f"map {pram_map.num_points} points, {pram_map.num_landmarks} landmarks, "
                     f"{pram_map.num_images} cameras")
    if track is not None:
        from pram_ros.viewer.report_view import log_report

        shown.append(f"{track.name}: {log_report(recording, track).describe()}")
    if url:
        print(f"pram view: open {url} ({'; '.join(shown) or 'live'}; Ctrl-C to stop)", flush=True)
    if args.live:
        from pram_ros.viewer.live import LiveConfig, run_live

        shown.append(run_live(recording, LiveConfig(node=args.node, duration_s=args.duration)))
    elif url:
        serve_until_interrupted()
    close_recording(recording)
    if args.save:
        print(f"wrote {args.save} ({'; '.join(shown)})")
    return 0
