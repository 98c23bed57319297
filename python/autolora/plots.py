"""`python -m autolora.plots RUN_DIR` redraws a run's figures; the code lives in autolora.io.plots."""

import sys

from autolora.io.plots import FIGURES, RunFigures, draw_run, main

__all__ = ["FIGURES", "RunFigures", "draw_run", "main"]

if __name__ == "__main__":
    main(sys.argv[1:])
