"""`python -m engine.cli` runs `livecc`."""

import sys

from engine.cli.main import main

sys.exit(main())
