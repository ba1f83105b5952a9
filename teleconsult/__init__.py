"""teleconsult: the composition root — configuration, the command line, and the wiring."""

__version__ = "0.1.0"
