"""``python -m drdrill.mirror.platform --service S --region R --port P`` (needs psycopg2)."""

import sys

from .server import main

sys.exit(main())
