import sys

from difusi.cli import main

sys.exit(main())
