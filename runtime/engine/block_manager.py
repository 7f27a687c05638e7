"""KV cache blocks: a fixed pool, per-request block tables, reference counts, and the prefix cache.

A block holds `block_size` consecutive tokens of one sequence. Full blocks are hashed with the hash
of the block before them, so a hash names a whole prefix; a request whose prompt starts with a
cached prefix takes those blocks by reference instead of computing them (no copy: full blocks are
never written again). Blocks no request holds stay cached until the pool needs them, and then the
least recently used go first.

Each request's block table, block hashes and count of blocks offered to the cache live here, keyed
by request id: nothing else writes them. It reads a request's tokens, never writes them.
"""

import hashlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field

from shoal.runtime.engine.request import Request

_ROOT_HASH = b""


@dataclass
class _RequestBlocks:
    block_ids: list[int] = field(default_factory=list)  # the block table, in token order
    block_hashes: list[bytes] = field(default_factory=list)  # hashes of the full blocks so far
    num_registered: int = 0  # leading blocks already offered to the prefix cache


def hash_block(parent_hash: bytes, token_ids: list[int]) -> bytes:
    """Content hash of a full block, chained to the prefix before it (sha256: no collisions to exploit)."""
    return hashlib.sha256(parent_hash + array("q", token_ids).tobytes()).digest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need num_blocks >= 1 and block_size >= 1, got {num_blocks} and {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref_counts = [0] * num_blocks
        self._block_hash: list[bytes | None] = [None] * num_blocks
        self._cached: dict[bytes, int] = {}
        # Free blocks that hold nothing reusable, taken first; popped from the end.
        self._free_plain: list[int] = list(reversed(range(num_blocks)))
        # Free blocks that hold a cached prefix, least recently used first.
        self._evictable: OrderedDict[int, None] = OrderedDict()
        self._requests: dict[str, _RequestBlocks] = {}
        self.prefix_cache_queries = 0  # tokens looked up at admission
        self.prefix_cache_hits = 0  # of those, tokens found

    @property
    def num_free_blocks(self) -> int:
        """Blocks no request holds, cached ones included: they are evicted on demand."""
        return len(self._free_plain) + len(self._evictable)

    @property
    def num_cached_blocks(self) -> int:
        return len(self._cached)

    @property
    def usage(self) -> float:
        return 1.0 - self.num_free_blocks / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def block_ids(self, request_id: str) -> list[int]:
        """The request's block table, in token order (empty if it holds no blocks)."""
        entry = self._requests.get(request_id)
        return entry.block_ids if entry is not None else []

    def find_cached_prefix(self, request: Request) -> list[int]:
        """Blocks holding the longest cached prefix of the request's tokens; takes no reference.

        The last token is never served from the cache: the model must run on at least one token to
        produce the next token's logits.
        """
        if not self.enable_prefix_caching:
            return []
        entry = self._entry(request.request_id)
        self._hash_full_blocks(request, entry, (request.num_tokens - 1) // self.block_size)
        hits = []
        for block_hash in entry.block_hashes[: (request.num_tokens - 1) // self.block_size]:
            block_id = self._cached.get(block_hash)
            if block_id is None:
                break
            hits.append(block_id)
        return hits

    def allocate(self, request: Request, num_new_tokens: int, cached_block_ids: list[int] | None = None) -> bool:
        """Give the request room for `num_new_tokens` more tokens. A request being admitted passes
        its prefix hit as `cached_block_ids` (maybe empty), which are taken first. Returns False,
        changing nothing, if the pool is too small."""
        admitting = cached_block_ids is not None
        entry = self._entry(request.request_id)
        if not admitting and self._has_room(request, entry, request.num_computed_tokens + num_new_tokens):
            return True  # most decode steps: the last block has room, and no block has filled
        cached_block_ids = cached_block_ids or []
        num_cached_tokens = len(cached_block_ids) * self.block_size
        total_tokens = request.num_computed_tokens + num_cached_tokens + num_new_tokens
        num_new_blocks = self.blocks_needed(total_tokens) - len(entry.block_ids) - len(cached_block_ids)
        cached_but_free = sum(1 for b in cached_block_ids if self._ref_counts[b] == 0)
        if num_new_blocks + cached_but_free > self.num_free_blocks:
            return False
        if admitting and self.enable_prefix_caching:
            self.prefix_cache_queries += request.num_tokens
            self.prefix_cache_hits += num_cached_tokens
        for block_id in cached_block_ids:
            self._take(block_id)
        entry.block_ids.extend(cached_block_ids)
        for _ in range(max(num_new_blocks, 0)):
            entry.block_ids.append(self._take(self._pop_free_block()))
        if self.enable_prefix_caching:
            # A block is offered to the cache once full of known tokens (an in-flight one is not known yet).
            self._cache_full_blocks(request, entry, min(total_tokens, request.num_tokens) // self.block_size)
        return True

    def free(self, request_id: str, keep_hashes: bool = False) -> None:
        """Drop the request's references; its tail blocks become the first to be evicted. A
        preempted request keeps its block hashes (its tokens stay the same), so finding its prefix
        again hashes nothing twice; a finished one leaves nothing behind."""
        entry = self._requests.pop(request_id, None)
        if entry is None:
            return
        for block_id in reversed(entry.block_ids):
            self._ref_counts[block_id] -= 1
            if self._ref_counts[block_id] == 0:
                if self._block_hash[block_id] is None:
                    self._free_plain.append(block_id)
                else:
                    self._evictable[block_id] = None
        if keep_hashes:
            self._requests[request_id] = _RequestBlocks(block_hashes=entry.block_hashes)

    def reset_prefix_cache(self) -> int:
        """Forgets every cached prefix (their K/V were computed by weights that may have changed since);
        returns how many blocks were forgotten. Blocks requests hold stay theirs, only uncached; free
        ones become plain free blocks."""
        forgotten = len(self._cached)
        self._cached.clear()
        self._block_hash = [None] * self.num_blocks
        self._free_plain.extend(reversed(self._evictable))
        self._evictable.clear()
        return forgotten

    def uncache_uncomputed(self, request: Request) -> None:
        """Takes the request's blocks past its computed tokens out of the prefix cache: they were
        offered to it when scheduled, but the step meant to write their K/V failed."""
        for block_id in self.block_ids(request.request_id)[request.num_computed_tokens // self.block_size :]:
            block_hash = self._block_hash[block_id]
            if block_hash is not None:
                del self._cached[block_hash]
                self._block_hash[block_id] = None

    def _has_room(self, request: Request, entry: _RequestBlocks, total_tokens: int) -> bool:
        """The request's blocks hold `total_tokens`, and every full one is already offered to the cache."""
        if total_tokens > len(entry.block_ids) * self.block_size:
            return False
        return (
            not self.enable_prefix_caching
            or min(total_tokens, request.num_tokens) // self.block_size <= entry.num_registered
        )

    def _entry(self, request_id: str) -> _RequestBlocks:
        entry = self._requests.get(request_id)
        if entry is None:
            entry = self._requests[request_id] = _RequestBlocks()
        return entry

    def _take(self, block_id: int) -> int:
        if self._ref_counts[block_id] == 0:
            self._evictable.pop(block_id, None)
        self._ref_counts[block_id] += 1
        return block_id

    def _pop_free_block(self) -> int:
        if self._free_plain:
            return self._free_plain.pop()
        block_id, _ = self._evictable.popitem(last=False)
        del self._cached[self._block_hash[block_id]]
        self._block_hash[block_id] = None
        return block_id

    def _hash_full_blocks(self, request: Request, entry: _RequestBlocks, num_full_blocks: int) -> None:
        hashes = entry.block_hashes
        for index in range(len(hashes), num_full_blocks):
            parent = hashes[index - 1] if index else _ROOT_HASH
            start = index * self.block_size
            hashes.append(hash_block(parent, request.token_ids[start : start + self.block_size]))

    def _cache_full_blocks(self, request: Request, entry: _RequestBlocks, num_full_blocks: int) -> None:
        """Register the request's full blocks so later requests can share them.

        Blocks are registered when scheduled, before their K/V are written; that is safe because a
        later reader in the same step runs after the writer within each layer.
        """
        self._hash_full_blocks(request, entry, num_full_blocks)
        first_block = entry.num_registered
        entry.num_registered = max(first_block, num_full_blocks)
        for index in range(first_block, num_full_blocks):
            block_id = entry.block_ids[index]
            block_hash = entry.block_hashes[index]
            if self._block_hash[block_id] is None and block_hash not in self._cached:
                self._cached[block_hash] = block_id
                self._block_hash[block_id] = block_hash
