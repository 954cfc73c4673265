"""`python -m llmtally` runs the `llmtally` command."""

import sys

from llmtally.cli import main

sys.exit(main())
