"""Traffic decisions as pure logic: canary split, rollback rules, measurement windows, QoS admission, tenant limits."""
