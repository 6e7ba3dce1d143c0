"""`python -m pcapsense` = the `pcapsense` command."""

from .cli import main

main()
