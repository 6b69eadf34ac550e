"""``python -m mushcam``: see :mod:`mushcam.cli`."""

import sys

from mushcam.cli import main

sys.exit(main())
