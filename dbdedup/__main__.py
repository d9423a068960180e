"""`python -m dbdedup` runs the command line."""

from dbdedup.cli.main import main

main()
