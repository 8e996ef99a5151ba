import sys

from mbdpo.cli import main

sys.exit(main())
