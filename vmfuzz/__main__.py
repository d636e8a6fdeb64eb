"""``python -m vmfuzz`` runs the command line."""

from vmfuzz.cli import main

raise SystemExit(main())
