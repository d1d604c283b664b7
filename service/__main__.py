"""`python -m service`: the `scimledger` command."""

import sys

from service.cli.main import main

sys.exit(main())
