"""`python -m stylecast.cli`: the same as the `stylecast` command."""

from stylecast.cli import main

main()
