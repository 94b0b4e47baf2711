"""autolab: a self-driving lab for InP/ZnS quantum-dot flow synthesis."""

__version__ = "0.1.0"
