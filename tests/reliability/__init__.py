"""botstate's reliability harness: crash, corruption, fuzz and bad-value trials, shared by the
quick tests in CI (``tests/test_crash.py``, ...) and the full run that writes
``docs/reliability.md`` (``python -m tests.reliability``)."""
