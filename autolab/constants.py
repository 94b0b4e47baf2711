"""Physical constants, one value each, for the twin, the analyzer and the benchmarks.

The twin turns emission energies into wavelengths and the analyzer turns them back: with two
values of the same constant the analyzer would read a twin's product a few parts per billion off
its truth for no reason.
"""

from __future__ import annotations

#: Planck constant times speed of light, eV·nm (CODATA 2018): ``E[eV] = HC_EV_NM / λ[nm]``.
HC_EV_NM = 1239.841984
