"""``python -m drdrill.testing.groundtruth --port 0 --control-port 0 [--region R]``."""

import sys

from drdrill.testing.groundtruth.server import main

sys.exit(main())
