"""``python -m tuning.search``: the search's command line (`tuning.search.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
