"""`python -m pram_ros.cli`: the `pram` command."""

import sys

from pram_ros.cli import main

sys.exit(main())
