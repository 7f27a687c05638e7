"""The config file: the local example loads; every mistake is refused naming the field, in the file
and in a pool entry pushed on its own (an admin API route)."""

import json

import pytest

from shoal.route_contract import (
    DEFAULT_RULES,
    ColdStart,
    ErrorRateRule,
    LatencyRatioRule,
    Speculation,
    TenantLimit,
    route_to_json,
)
from shoal.router.config import ConfigError, load_config, parse_config, parse_pool
from shoal.router.dev import LOCAL_CONFIG


def minimal(**pool) -> dict:
    return {
        "pools": [
            {"name": "chat", "stable": "v1", "revisions": {"v1": {"endpoints": [{"target": "10.0.0.1:50051"}]}}, **pool}
        ]
    }


def test_the_local_example_loads_with_its_key_file():
    config = load_config(LOCAL_CONFIG)
    (pool,) = config.pools
    assert pool.model == "SmolLM2-135M-Instruct" and pool.stable == "stable"
    assert pool.revisions["stable"][0].target == "127.0.0.1:50051"
    assert len(pool.rollback_rules) == 4 and config.listen.port == 8000
    assert list(config.api_keys.values()) == ["local"]
    assert "sk-shoal-local" not in repr(config)  # keys are held hashed and never printed


def test_defaults_fill_in():
    config = parse_config(minimal())
    pool = config.pools[0]
    assert pool.model == "chat" and pool.canary is None and pool.rollback_rules == DEFAULT_RULES
    assert config.grpc is not None and config.anonymous_tenant is None


def test_rules_parse_with_their_settings():
    config = parse_config(
        minimal(
            rollback_rules=[
                {"latency_ratio": {"metric": "ttft", "max_ratio": 2}},
                {"error_rate": {"max_over_stable": 0.01, "max_rate": None}},
            ]
        )
    )
    assert config.pools[0].rollback_rules == (
        LatencyRatioRule(metric="ttft", max_ratio=2.0),
        ErrorRateRule(max_rate=None, max_over_stable=0.01),
    )


def test_pools_may_be_empty_and_carry_tenant_limits():
    assert parse_config({"pools": []}).pools == ()
    config = parse_config({**minimal(tenants=[{"name": "a", "max_concurrent": 1}]), "tenants": [{"name": "a"}]})
    assert config.pools[0].tenants == (TenantLimit("a", max_concurrent=1),)


def test_who_may_speculate_defaults_to_everyone_at_any_load_and_reads_back():
    assert parse_config(minimal()).pools[0].speculative == Speculation(("realtime", "batch"), (), None)
    assert parse_config(minimal(speculative={"max_load": None})).pools[0].speculative == Speculation()
    written = {"qos_classes": ["realtime"], "tenants_off": ["a"], "max_load": 1}
    config = parse_config({**minimal(speculative=written), "tenants": [{"name": "a"}]})
    route = config.pools[0]
    assert route.speculative == Speculation(qos_classes=("realtime",), tenants_off=("a",), max_load=1.0)
    assert route_to_json(route)["speculative"] == {"qos_classes": ["realtime"], "tenants_off": ["a"], "max_load": 1.0}
    assert parse_pool(json.loads(json.dumps(route_to_json(route)))) == route
    assert parse_pool(minimal(speculative={"qos_classes": []})["pools"][0]).speculative.qos_classes == ()


@pytest.mark.parametrize(
    ("speculative", "message"),
    [
        ("on", "pools[0].speculative: must be dict"),
        ({"enabled": True}, "pools[0].speculative.enabled: unknown field"),
        ({"qos_classes": "realtime"}, "pools[0].speculative.qos_classes: must be list"),
        ({"qos_classes": ["bulk"]}, "pools[0].speculative.qos_classes[0]: must be one of realtime, batch, got 'bulk'"),
        ({"qos_classes": ["batch", "batch"]}, "pools[0].speculative.qos_classes[1]: 'batch' is used twice"),
        ({"tenants_off": [3]}, "pools[0].speculative.tenants_off[0]: must be str"),
        ({"tenants_off": ["ghost"]}, "pools[0].speculative.tenants_off[0]: no tenant 'ghost' under tenants"),
        ({"max_load": "high"}, "pools[0].speculative.max_load: must be float"),
        ({"max_load": -0.5}, "pools[0].speculative.max_load: must be >= 0.0"),
    ],
)
def test_speculation_mistakes_name_the_field(speculative, message):
    with pytest.raises(ConfigError) as error:
        parse_config(minimal(speculative=speculative))
    assert str(error.value).startswith(message)


def test_a_pool_holds_its_requests_while_it_has_no_ready_runtime_by_default_and_reads_back():
    assert parse_config(minimal()).pools[0].cold_start == ColdStart(enabled=True, max_queued=64, max_wait_s=120.0)
    route = parse_config(minimal(cold_start={"max_queued": 8, "max_wait_s": 30})).pools[0]
    assert route.cold_start == ColdStart(max_queued=8, max_wait_s=30.0)
    assert route_to_json(route)["cold_start"] == {"enabled": True, "max_queued": 8, "max_wait_s": 30.0}
    assert parse_pool(json.loads(json.dumps(route_to_json(route)))) == route
    assert not parse_pool(minimal(cold_start={"enabled": False})["pools"][0]).cold_start.enabled


def test_a_pool_takes_both_qos_classes_by_default_and_reads_back_the_ones_it_takes():
    assert parse_config(minimal()).pools[0].qos_classes == ("realtime", "batch")
    assert "qos_classes" not in route_to_json(parse_config(minimal()).pools[0])  # for routers older than it
    route = parse_config(minimal(qos_classes=["batch"])).pools[0]
    assert route.qos_classes == ("batch",) and route_to_json(route)["qos_classes"] == ["batch"]
    assert parse_pool(json.loads(json.dumps(route_to_json(route)))) == route


@pytest.mark.parametrize(
    ("qos_classes", "message"),
    [
        ("batch", "pools[0].qos_classes: must be list"),
        ([], "pools[0].qos_classes: must list at least one of realtime, batch (left out: both)"),
        (["bulk"], "pools[0].qos_classes[0]: must be one of realtime, batch, got 'bulk'"),
        (["batch", "batch"], "pools[0].qos_classes[1]: 'batch' is used twice"),
    ],
)
def test_qos_class_mistakes_name_the_field(qos_classes, message):
    with pytest.raises(ConfigError) as error:
        parse_config(minimal(qos_classes=qos_classes))
    assert str(error.value).startswith(message)


def test_two_pools_may_serve_one_model_each_taking_its_own_qos_classes():
    realtime = {**minimal()["pools"][0], "model": "llama", "qos_classes": ["realtime"]}
    batch = {**realtime, "name": "chat-batch", "qos_classes": ["batch"]}
    config = parse_config({"pools": [realtime, batch]})
    assert [(p.name, p.model, p.qos_classes) for p in config.pools] == [
        ("chat", "llama", ("realtime",)),
        ("chat-batch", "llama", ("batch",)),
    ]
    with pytest.raises(ConfigError) as error:  # the second one takes both: realtime twice
        parse_config({"pools": [realtime, {**batch, "qos_classes": ["batch", "realtime"]}]})
    assert str(error.value) == (
        "pools[1]: model 'llama' is served by pool 'chat' for realtime requests (its qos_classes: realtime): "
        "pools of one model take different QoS classes"
    )


@pytest.mark.parametrize(
    ("cold_start", "message"),
    [
        ("on", "pools[0].cold_start: must be dict"),
        ({"enabled": "yes"}, "pools[0].cold_start.enabled: must be bool"),
        ({"max_queued": 0}, "pools[0].cold_start.max_queued: must be >= 1"),
        ({"max_wait_s": -1}, "pools[0].cold_start.max_wait_s: must be >= 0.0"),
        ({"timeout_s": 5}, "pools[0].cold_start.timeout_s: unknown field"),
    ],
)
def test_cold_start_mistakes_name_the_field(cold_start, message):
    with pytest.raises(ConfigError) as error:
        parse_config(minimal(cold_start=cold_start))
    assert str(error.value).startswith(message)


def test_rules_set_how_long_a_pool_looks_back():
    assert parse_config(minimal()).pools[0].longest_window_s == 60.0
    assert parse_config(minimal(rollback_rules=[{"preemptions": {"window_s": 900}}])).pools[0].longest_window_s == 900.0
    assert parse_config(minimal(rollback_rules=[])).pools[0].longest_window_s == 0.0


def test_a_pool_entry_alone_names_its_fields_from_its_top():
    entry = minimal()["pools"][0]
    assert parse_pool(entry).revisions["v1"][0].target == "10.0.0.1:50051"
    for mistake, message in [
        ({"canary_weight": "ten"}, "canary_weight: must be float"),
        ({"colour": "blue"}, "colour: unknown field"),
        ({"canary": "v1"}, "canary: must differ from stable"),
        (
            {"revisions": {"v1": {"endpoints": [{"target": "nohost"}]}}},
            "revisions.v1.endpoints[0].target: must be host:port",
        ),
        ({"rollback_rules": [{"vibes": {}}]}, "rollback_rules[0]: unknown rule 'vibes'"),
        ({"tenants": [{"name": "a", "default_qos": "batch"}]}, "tenants[0].default_qos: unknown field"),
        ({"tenants": [{"name": "a"}, {"name": "a"}]}, "tenants[1].name: 'a' is used twice"),
    ]:
        with pytest.raises(ConfigError) as error:
            parse_pool({**entry, **mistake})
        assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "pools: required"),
        (
            minimal(tenants=[{"name": "ghost", "max_concurrent": 1}]),
            "pools[0].tenants[0].name: no tenant 'ghost' under tenants",
        ),
        (minimal(colour="blue"), "pools[0].colour: unknown field"),
        (minimal(canary_weight="ten"), "pools[0].canary_weight: must be float"),
        (minimal(canary_weight=120), "pools[0].canary_weight: must be <= 100"),
        (minimal(canary="v1"), "pools[0].canary: must differ from stable"),
        (
            minimal(revisions={"v1": {"endpoints": [{"target": "nohost"}]}}),
            "pools[0].revisions.v1.endpoints[0].target: must be host:port",
        ),
        (minimal(rollback_rules=[{"vibes": {}}]), "pools[0].rollback_rules[0]: unknown rule 'vibes'"),
        (
            minimal(rollback_rules=[{"latency_ratio": {"metric": "speed"}}]),
            "pools[0].rollback_rules[0].latency_ratio.metric: must be one of ttft, itl, e2e",
        ),
        (minimal(rollback_rules=[{"error_rate": {"max_rate": None}}]), "set max_rate, max_over_stable or both"),
        (
            minimal(qos={"batch_share_min": 0.9, "batch_share_max": 0.5}),
            "pools[0].qos.batch_share_min: must be <= batch_share_max",
        ),
        (
            {**minimal(), "tenants": [{"name": "a", "default_qos": "vip"}]},
            "tenants[0].default_qos: must be one of realtime, batch",
        ),
        ({**minimal(), "auth": {"anonymous_tenant": "ghost"}}, "tenant 'ghost' has keys but is not listed"),
        ({"pools": [minimal()["pools"][0], minimal()["pools"][0]]}, "pools[1].name: 'chat' is used twice"),
        (
            {"pools": [minimal()["pools"][0], {**minimal()["pools"][0], "name": "twin", "model": "chat"}]},
            "pools[1]: model 'chat' is served by pool 'chat' for realtime and batch requests",
        ),
    ],
)
def test_mistakes_name_the_field(data, message):
    with pytest.raises(ConfigError) as error:
        parse_config(json.loads(json.dumps(data)))
    assert message in str(error.value)


def test_key_file_problems_are_config_errors(tmp_path):
    (tmp_path / "keys.yaml").write_text("keys:\n  - {key: sk-1, tenant: a}\n  - {key: sk-1, tenant: a}\n")
    (tmp_path / "router.yaml").write_text(
        json.dumps({**minimal(), "tenants": [{"name": "a"}], "auth": {"api_keys_file": "keys.yaml"}})
    )
    with pytest.raises(ConfigError, match="the same key is listed twice"):
        load_config(tmp_path / "router.yaml")
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "router.internal", ""])
def test_an_admin_api_beyond_loopback_needs_a_token(host):
    with pytest.raises(ConfigError) as error:
        parse_config({**minimal(), "admin": {"host": host}})
    assert str(error.value).startswith(f"admin.token_file: required when admin.host is {host!r}")


def test_an_admin_api_on_loopback_may_go_without_a_token_and_anywhere_with_one(tmp_path):
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert parse_config({**minimal(), "admin": {"host": host}}).admin_token is None
    (tmp_path / "admin-token").write_text("s3cret\n")
    (tmp_path / "router.yaml").write_text(
        json.dumps({**minimal(), "admin": {"host": "0.0.0.0", "token_file": "admin-token"}})
    )
    assert load_config(tmp_path / "router.yaml").admin_token == "s3cret"
