"""`python -m cli …`: run one admin action from the shell."""

import sys

from cli.admin import main

sys.exit(main())
