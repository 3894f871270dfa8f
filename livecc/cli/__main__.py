"""`python -m livecc.cli` runs `livecc`."""

from livecc.cli.main import program

program()
