"""``python -m quickcart.embedded start|stop|status [--data-dir DIR]``."""

import sys

from quickcart.embedded.services import main

sys.exit(main())
