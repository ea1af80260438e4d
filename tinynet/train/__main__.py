"""``python -m tinynet.train --model NAME --data FOLDER ...``: train an image classifier (see images.py)."""
import sys

from .images import GENERIC, main

sys.exit(main(command=GENERIC))
