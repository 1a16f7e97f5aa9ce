"""`python -m deepcut.tables DIR... [--out OUT] [--all]`: see deepcut.tables.build."""
import sys

from deepcut.tables.build import main

sys.exit(main())
