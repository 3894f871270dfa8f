"""`python -m livecc` runs `livecc`."""

from livecc.cli.main import program

program()
