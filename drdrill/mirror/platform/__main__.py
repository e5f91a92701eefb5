"""``python -m drdrill.mirror.platform --service S --region R --port P`` (needs psycopg2 and redis-py)."""

import sys

from .server import main

sys.exit(main())
