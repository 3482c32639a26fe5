"""``python -m sam2rt``."""

import sys

from sam2rt.cli import main

sys.exit(main())
