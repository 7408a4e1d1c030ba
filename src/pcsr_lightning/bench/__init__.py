"""The wall-clock benchmark (``pcsr bench``): routed PCSR against the network it accelerates, side by side.

``timing`` (interleaved rounds, paired ratios, profiles, the machine), ``inputs`` (what it runs on) and
``run`` (the whole benchmark, ``run_bench``), apart from quality measurement in ``evaluation``.
"""
