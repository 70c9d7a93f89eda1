"""``python -m inductionlab``: the same as the ``inductionlab`` command."""

from inductionlab.cli import main

main()
