"""Traffic decisions as pure logic: the pool of a model and QoS class, canary split, rollback rules, measurement
windows, QoS admission, tenant limits."""
