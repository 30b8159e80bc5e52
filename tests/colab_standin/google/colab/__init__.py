"""A stand-in for Colab's ``google.colab`` package, for running the notebooks the way Colab would in CI.

Only what cifarlib uses exists: ``drive.mount`` and ``drive.flush_and_unmount`` (see ``drive.py``). The folder
above ``google/`` goes on the stand-in environment's path; ``google/`` has no ``__init__.py``, so it merges with
the ``google`` namespace that protobuf installs, as in Colab.
"""
