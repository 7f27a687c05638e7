"""API keys to tenants, and which QoS class a request gets."""

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.router.config import TenantConfig, hash_api_key, parse_config
from shoal.router.errors import InvalidRequest, Unauthenticated
from shoal.router.identity import Authenticator, qos_class


@pytest.fixture
def auth() -> Authenticator:
    config = parse_config(
        {"pools": [{"name": "p", "stable": "v1"}], "tenants": [{"name": "acme", "default_qos": "batch"}]}
    )
    return Authenticator(
        dataclasses.replace(
            config, api_keys={hash_api_key("sk-acme"): "acme"}, tenants=(TenantConfig("acme", default_qos="batch"),)
        )
    )


def test_bearer_keys_map_to_tenants(auth):
    assert auth.tenant("Bearer sk-acme") == "acme" and auth.tenant("bearer  sk-acme ") == "acme"
    assert auth.default_qos("acme") == "batch"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer sk-other", "Basic sk-acme", "sk-acme"])
def test_missing_or_wrong_keys_are_401_and_never_echoed(auth, header):
    with pytest.raises(Unauthenticated) as error:
        auth.tenant(header)
    assert error.value.http_status == 401 and error.value.code == "invalid_api_key"
    assert "sk-" not in error.value.message


def test_qos_class_precedence():
    assert qos_class("realtime") == "realtime"
    assert qos_class("realtime", header="batch", service_tier="priority") == "batch"
    assert qos_class("realtime", service_tier="flex", priority=0) == "batch"
    assert qos_class("batch", service_tier="auto") == "batch"
    assert qos_class("batch", service_tier="priority") == "realtime"
    assert qos_class("realtime", priority=3) == "batch" and qos_class("batch", priority=0) == "realtime"
    with pytest.raises(InvalidRequest):
        qos_class("realtime", header="vip")
    with pytest.raises(InvalidRequest) as error:
        qos_class("realtime", service_tier="gold")
    assert error.value.param == "service_tier"


SECRET = "sk-acme"
MALFORMED = [
    f"Bearer {SECRET}\x01",
    f"Bearer {SECRET}\x7f",
    f"Bearer {SECRET}\n",
    f"Bearer\t{SECRET}",
    f"Bearer {SECRET}\u00e9",
    f"Bearer {SECRET}\udce9",  # a non-ASCII byte, as aiohttp hands it on (surrogateescape)
    f"Bearer {SECRET}" + "A" * 10_000,
    f"Bearer {SECRET}\u2028",
]


@pytest.mark.parametrize("header", MALFORMED)
def test_a_malformed_header_is_a_401_that_never_echoes_it(auth, header):
    with pytest.raises(Unauthenticated) as error:
        auth.tenant(header)
    assert error.value.message.startswith("Malformed Authorization header")
    assert SECRET not in str(error.value.body()) and "acme" not in str(error.value.body())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rest=st.text(max_size=2000), scheme=st.sampled_from(["Bearer ", "bearer  ", "Basic ", ""]), tail=st.text(max_size=3)
)
def test_no_header_value_is_ever_echoed_and_nothing_else_crashes(auth, rest, scheme, tail):
    key = "sk-" + rest  # "sk-" is in none of our own messages, so finding it would be an echo
    try:
        tenant = auth.tenant(scheme + key + tail)
    except Unauthenticated as error:
        assert "sk-" not in str(error.body())
    else:
        assert tenant == "acme" and scheme.lower().startswith("bearer") and (key + tail).strip() == SECRET
