"""`python -m gtok.cli`: the same as the `gtok` command."""

import sys

from gtok.cli import main

sys.exit(main())
