"""``python -m dynwf``: the same command line as the ``dynwf`` script."""

from dynwf.cli import main

if __name__ == "__main__":
    main()
