"""``python -m xnorlab``: the ``xnorlab`` command, as torchrun runs it
(``torchrun --nproc-per-node N -m xnorlab train ...``)."""

import sys

from xnorlab.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
