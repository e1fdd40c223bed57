"""``python -m requests_tokenauth`` (also the ``tokenauth`` console script): ``demo``,
``token`` and ``request``; see :mod:`requests_tokenauth._cli`."""

from __future__ import annotations

import sys

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
