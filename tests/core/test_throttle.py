"""Failed logins per source: slowed, then refused for a while; time is a plain number."""

from __future__ import annotations

from mailbridge.core.throttle import LoginThrottle, ThrottleRules

RULES = ThrottleRules(free_failures=2, delay=1.0, max_delay=4.0, lockout_after=5,
                      lockout=600.0, window=300.0)


def test_first_failures_are_free_then_slowed_doubling_to_a_cap() -> None:
    """After the free failures each answer waits longer, up to max_delay."""
    throttle = LoginThrottle(ThrottleRules(free_failures=2, delay=1.0, max_delay=4.0,
                                           lockout_after=100))
    delays = [throttle.failed("192.0.2.1", float(t)) for t in range(6)]
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 4.0]


def test_lockout_refuses_even_the_right_password_until_it_ends() -> None:
    """At lockout_after failures the source is refused; after `lockout` it may try again."""
    throttle = LoginThrottle(RULES)
    for t in range(5):
        assert throttle.admit("192.0.2.1", float(t)).allowed
        throttle.failed("192.0.2.1", float(t))
    refused = throttle.admit("192.0.2.1", 10.0)
    assert not refused.allowed and refused.retry_after == 594.0
    assert throttle.admit("198.51.100.7", 10.0).allowed, "other sources are not affected"
    assert throttle.admit("192.0.2.1", 604.0).allowed
    assert throttle.failed("192.0.2.1", 604.0) == 0.0, "the count started over"


def test_old_failures_are_forgotten_and_a_success_clears_them() -> None:
    """Failures leave the window; a correct login forgets the rest."""
    throttle = LoginThrottle(RULES)
    for t in (0.0, 1.0, 2.0):
        throttle.failed("192.0.2.1", t)
    assert throttle.failures("192.0.2.1", 3.0) == 3
    assert throttle.failures("192.0.2.1", 301.5) == 1
    throttle.succeeded("192.0.2.1")
    assert throttle.failures("192.0.2.1", 302.0) == 0


def test_memory_is_bounded() -> None:
    """Only max_keys sources are remembered; the oldest go first."""
    throttle = LoginThrottle(ThrottleRules(max_keys=3))
    for n in range(5):
        throttle.failed(f"192.0.2.{n}", float(n))
    assert throttle.failures("192.0.2.0", 5.0) == 0
    assert throttle.failures("192.0.2.4", 5.0) == 1
