"""``python -m botstate`` runs the command line."""

from botstate.cli import main

main()
