"""Write the deletion/insertion figure of a results store: python benchmarks/trust_figure.py STORE OUT.png"""

import sys

from mushcam.trust.figure import save_curves_figure

if __name__ == "__main__":
    print(f"{save_curves_figure(sys.argv[1], sys.argv[2])} runs drawn into {sys.argv[2]}")
