"""`python -m pallet.registry.server`: the same commands as `pallet registry` (serve, gc)."""

import sys

from pallet.registry.server.main import main

sys.exit(main(sys.argv[1:]))
