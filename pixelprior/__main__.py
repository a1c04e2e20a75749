"""``python -m pixelprior ...`` (and ``accelerate launch -m pixelprior ...``)."""

import sys

from .cli import main

sys.exit(main())
