"""``python -m nurture``: the same as the ``nurture`` command."""

from nurture.cli import main

main()
