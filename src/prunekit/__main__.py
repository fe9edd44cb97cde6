"""``python -m prunekit`` runs the command line."""
import sys

from prunekit.cli import main

sys.exit(main())
