"""Which batch sizes get a CUDA graph: pure, so CI checks it without a GPU."""

from shoal.runtime.worker.cuda_graphs import capture_sizes


def test_sizes_step_by_16_up_to_256_then_by_64_and_end_at_the_largest_batch():
    assert capture_sizes(1) == [1]
    assert capture_sizes(100) == [1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 100]
    assert capture_sizes(256)[-3:] == [224, 240, 256]
    verify = capture_sizes(256 * 5)  # 256 requests, each with 4 drafts: 1,280 single-token sequences
    assert verify[verify.index(256) :] == [256, *range(320, 1280, 64), 1280]
    for n in (3, 17, 257, 300, 1000):
        sizes = capture_sizes(n)
        assert sizes == sorted(set(sizes)) and sizes[-1] == n
