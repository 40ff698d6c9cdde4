import sys

from ml.validate import main

sys.exit(main())
