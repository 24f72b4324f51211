"""Real servers started by the tests on loopback (installed into `.cache/`, never mocked)."""
