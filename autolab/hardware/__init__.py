"""Hardware layer of the CSTR rig: transport, protocols, drivers, devices file, safety.

Imports only records, exceptions and space (never twin/analysis/optimizer/tracking/executors).
"""
