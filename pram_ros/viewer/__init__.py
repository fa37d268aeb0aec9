"""`pram view`: a map, a report or a live node in rerun's viewer, where RViz is missing.

map_view.py logs a map file, report_view.py a `pram eval` report or a `pram localize`
output, live.py (the only module here that imports rclpy) a running pram_node's topics;
recording.py opens the recording (an .rrd file and/or the web viewer), cli.py is the
subcommand. colors.py holds the landmark colours the RViz markers use, without ROS.
"""
