"""``python -m paretrain.cli``: the command line, as the ``paretrain`` script runs it."""

from paretrain.cli import main

main()
