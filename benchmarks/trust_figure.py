"""Write the deletion/insertion figure of a results store.

    python benchmarks/trust_figure.py STORE OUT.png [MODEL ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from mushcam.trust.figure import save_curves_figure  # noqa: E402

if __name__ == "__main__":
    print(f"{save_curves_figure(sys.argv[1], sys.argv[2], models=sys.argv[3:] or None)} runs drawn into {sys.argv[2]}")
