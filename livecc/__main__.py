"""`python -m livecc` runs `livecc`."""

import sys

from livecc.cli.main import main

sys.exit(main())
