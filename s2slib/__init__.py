"""s2slib: the library behind the course "A Telugu speech-to-speech voice agent, built step by step".

Notebooks under ``notebooks/`` explain and plot; the models, losses, trainers and data code they call live here.
"""

__version__ = "0.1.0"
