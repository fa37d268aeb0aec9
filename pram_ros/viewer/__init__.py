"""`pram view`: a map, a report or a live node in rerun's viewer, where RViz is missing.

map_view.py logs a map file; report_data.py reads a `pram eval` report or a `pram localize`
output back and report_view.py logs it; live.py (the only module here that imports rclpy)
logs a running pram_node's topics. recording.py opens the recording (an .rrd file and/or
the web viewer), colors.py the landmark colours (the RViz markers use them too); the
subcommand is pram_ros/cli/view.py.
"""
