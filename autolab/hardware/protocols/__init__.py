"""Pure encode/parse functions of the device protocols (no I/O; the transport does the I/O).

* :mod:`.newera` — New Era NE-1000/NE-500 syringe pumps, Basic and Safe mode.
* :mod:`.eurotherm` — Eurotherm 3200 register map and scaling (Modbus RTU via minimalmodbus).
* :mod:`.ika` — IKA NAMUR ASCII commands (stirrers).
* :mod:`.vici` — VICI Valco universal actuator ASCII commands (selection valves).
* :mod:`.spectro` — the autolab inline-spectrometer serial protocol (ASP-1).
"""
