"""The benchmark of issue 6 (speed and scale): `python -m bench`, see __main__.py and the README."""
