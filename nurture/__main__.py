"""``python -m nurture``: the same as the ``nurture`` command."""

from nurture.cli import main

# Guarded: worker processes (nurture.render_pool) import the main module again.
if __name__ == "__main__":
    main()
