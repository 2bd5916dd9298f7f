"""The test suite, a package so that its shared helpers are imported by name (`from test.ros_helpers import ...`)
by the tests and by bench/; run it from the repository root (`make test`, `python -m pytest`)."""
