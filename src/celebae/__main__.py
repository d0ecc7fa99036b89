"""``python -m celebae`` (and ``torchrun -m celebae train ...``)."""

import sys

from .cli import main

sys.exit(main())
