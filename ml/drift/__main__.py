import sys

from ml.drift.cli import main

sys.exit(main())
