"""Reference data shipped inside the package (found after any install, editable or not).

``cmmd_paper_results.csv``: the figures the CMMD paper publishes (one row per table, data set,
split, model and metric), shown as "paper" beside ours by ``mmbench table``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# pip installs packages as folders, never zipped, so the resource is a file on disk
PAPER_RESULTS_CSV = Path(str(files(__name__).joinpath("cmmd_paper_results.csv")))
