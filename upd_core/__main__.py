"""`python -m upd_core ...` entry point."""
import sys

from .cli import main

sys.exit(main())
