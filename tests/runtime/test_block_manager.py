"""KV block pool: allocation, reference counts, prefix sharing, LRU eviction."""

from shoal.runtime.engine.block_manager import BlockManager
from tests.runtime.helpers import make_request


def admit(manager: BlockManager, request, num_tokens: int | None = None) -> bool:
    hits = manager.find_cached_prefix(request)
    hit_tokens = len(hits) * manager.block_size
    new = (request.num_tokens - hit_tokens) if num_tokens is None else num_tokens
    ok = manager.allocate(request, new, hits)
    if ok:
        request.num_computed_tokens = hit_tokens + new
    return ok


def test_allocation_takes_ceil_of_tokens_over_block_size_and_free_returns_them():
    manager = BlockManager(num_blocks=10, block_size=4)
    request = make_request("a", num_prompt_tokens=9)
    assert admit(manager, request)
    assert len(manager.block_ids(request.request_id)) == 3
    assert manager.num_free_blocks == 7
    manager.free(request.request_id)
    assert manager.num_free_blocks == 10
    assert manager.block_ids(request.request_id) == []


def test_allocation_that_does_not_fit_changes_nothing():
    manager = BlockManager(num_blocks=2, block_size=4)
    request = make_request("a", num_prompt_tokens=9)
    assert not admit(manager, request)
    assert manager.num_free_blocks == 2
    assert manager.block_ids(request.request_id) == []


def test_decode_allocates_a_new_block_only_at_a_block_boundary():
    manager = BlockManager(num_blocks=10, block_size=4)
    request = make_request("a", num_prompt_tokens=7)
    assert admit(manager, request)
    assert len(manager.block_ids(request.request_id)) == 2
    request.token_ids.append(1)  # token 8 fits in block 2
    assert manager.allocate(request, 1)
    request.num_computed_tokens += 1
    assert len(manager.block_ids(request.request_id)) == 2
    request.token_ids.append(2)  # token 9 needs block 3
    assert manager.allocate(request, 1)
    assert len(manager.block_ids(request.request_id)) == 3


def test_shared_prefix_reuses_full_blocks_by_reference():
    manager = BlockManager(num_blocks=20, block_size=4)
    shared = list(range(100, 112))  # three full blocks
    first = make_request("a", token_ids=shared + [1, 2])
    second = make_request("b", token_ids=shared + [3, 4, 5])
    assert admit(manager, first)
    free_after_first = manager.num_free_blocks
    assert admit(manager, second)
    assert manager.block_ids(second.request_id)[:3] == manager.block_ids(first.request_id)[:3]
    assert second.num_computed_tokens == 15
    assert manager.num_free_blocks == free_after_first - 1  # only its own tail block is new
    assert manager.prefix_cache_hits == 12
    assert manager.prefix_cache_queries == 14 + 15


def test_the_last_token_is_never_a_cache_hit():
    manager = BlockManager(num_blocks=20, block_size=4)
    prompt = list(range(8))  # exactly two blocks
    first = make_request("a", token_ids=prompt)
    assert admit(manager, first)
    manager.free(first.request_id)
    again = make_request("b", token_ids=prompt)
    hits = manager.find_cached_prefix(again)
    assert len(hits) == 1  # the second block holds the last token, which must be computed


def test_freed_prefix_stays_cached_until_the_pool_needs_it():
    manager = BlockManager(num_blocks=4, block_size=4)
    first = make_request("a", token_ids=list(range(9)))
    assert admit(manager, first)
    manager.free(first.request_id)
    assert manager.num_free_blocks == 4
    assert manager.num_cached_blocks == 2
    reuse = make_request("b", token_ids=list(range(9)) + [50])
    assert len(manager.find_cached_prefix(reuse)) == 2
    # A request needing the whole pool evicts the cached blocks.
    big = make_request("c", token_ids=list(range(500, 516)))
    assert admit(manager, big)
    assert manager.num_cached_blocks == 4  # big's own full blocks, the old prefix gone
    assert manager.find_cached_prefix(reuse) == []


def test_eviction_takes_least_recently_used_cached_blocks_first():
    manager = BlockManager(num_blocks=4, block_size=2)
    old = make_request("old", token_ids=[1, 2, 3])
    new = make_request("new", token_ids=[7, 8, 9])
    assert admit(manager, old)
    assert admit(manager, new)
    manager.free(old.request_id)
    manager.free(new.request_id)  # freed later: more recently used
    filler = make_request("filler", token_ids=[20, 21, 22])
    assert admit(manager, filler)  # needs 2 blocks: the two plain tail blocks go first
    taker = make_request("taker", token_ids=[30, 31])
    assert admit(manager, taker)  # one more: the oldest cached block is evicted
    assert manager.find_cached_prefix(make_request("x", token_ids=[1, 2, 3])) == []
    assert len(manager.find_cached_prefix(make_request("y", token_ids=[7, 8, 9]))) == 1


def test_shared_block_is_freed_only_when_its_last_holder_leaves():
    manager = BlockManager(num_blocks=10, block_size=4)
    a = make_request("a", token_ids=list(range(8)) + [1])
    b = make_request("b", token_ids=list(range(8)) + [2])
    assert admit(manager, a) and admit(manager, b)
    in_use = 10 - manager.num_free_blocks
    assert in_use == 4  # two shared + one tail each
    manager.free(a.request_id)
    assert 10 - manager.num_free_blocks == 3
    manager.free(b.request_id)
    assert manager.num_free_blocks == 10


def test_prefix_caching_off_shares_nothing():
    manager = BlockManager(num_blocks=20, block_size=4, enable_prefix_caching=False)
    first = make_request("a", token_ids=list(range(12)) + [1])
    second = make_request("b", token_ids=list(range(12)) + [2])
    assert admit(manager, first) and admit(manager, second)
    assert set(manager.block_ids(first.request_id)).isdisjoint(manager.block_ids(second.request_id))
    assert manager.num_cached_blocks == 0
