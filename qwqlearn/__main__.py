import sys

from qwqlearn.cli import main

sys.exit(main())
