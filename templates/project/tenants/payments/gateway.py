"""A stand-in for a payment provider's API, unavailable now and then.

A tenant's code may span several modules: every .py file in its folder is loaded.
"""

import uuid


class GatewayUnavailable(Exception):
    pass


def charge(amount, currency, *, attempt, failures):
    """Fail the first `failures` attempts, the way a flaky network call would."""
    if attempt <= failures:
        raise GatewayUnavailable(f"gateway timed out (attempt {attempt})")
    return {"charge_id": f"ch_{uuid.uuid4().hex[:12]}", "amount": amount, "currency": currency}
