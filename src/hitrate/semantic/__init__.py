"""Semantic cache: embed the last user turn, find cached neighbours in the same scope,
verify before serving. Heavy parts (numpy, embedders) load lazily."""

import os

# OpenMP reads its settings once, when the first library using it loads - here usearch
# (the embedded index) usually loads before the e5 engine. With the default spin-waiting
# the engine's idle OpenMP workers burn the cores the event loop and the embedding need:
# under `hitrate serve` every lookup then missed its 1 s deadline (measured: 73 of 77).
# Set before any of this package's modules can load OpenMP; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
