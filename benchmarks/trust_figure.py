"""Write the deletion/insertion figure of a results store: python benchmarks/trust_figure.py STORE OUT.png [MODEL ...]"""

import sys

from mushcam.trust.figure import save_curves_figure

if __name__ == "__main__":
    print(f"{save_curves_figure(sys.argv[1], sys.argv[2], models=sys.argv[3:] or None)} runs drawn into {sys.argv[2]}")
