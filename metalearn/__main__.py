"""`python -m metalearn` (and `torchrun -m metalearn`): the `metalearn` command."""

from metalearn.cli import main

if __name__ == "__main__":
    main(prog_name="metalearn")
