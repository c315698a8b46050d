"""`python -m metalearn.cli`: the `metalearn` command."""

from metalearn.cli import main

if __name__ == "__main__":
    main(prog_name="metalearn")
