"""One step's draws on their way to the host: copied in the background, read when the engine asks."""

import torch

from shoal.runtime.engine.messages import SampledToken
from shoal.runtime.sampling.sampler import SamplerOutput


class SampledBatch:
    """The draws stay on the device, copied to the host in the background, until `to_host` reads
    them: the engine can launch the next step first (async scheduling)."""

    def __init__(self, sampled: SamplerOutput, logprob_counts: list[int | None]):
        self.token_ids = sampled.token_ids
        self.logprob_counts = logprob_counts
        self._on_host = [t.to("cpu", non_blocking=True) for t in (sampled.token_ids, *(sampled.logprobs or ()))]
        self._accepted = sampled.accepted.to("cpu", non_blocking=True) if sampled.accepted is not None else None
        self._ready = None
        if sampled.token_ids.is_cuda:
            self._ready = torch.cuda.Event()
            self._ready.record()

    def to_host(self) -> tuple[list[SampledToken], list[bool] | None]:
        """Each row's token, and whether each row accepted its draft (None: no row had one)."""
        if self._ready is not None:
            self._ready.synchronize()
        accepted = self._accepted.tolist() if self._accepted is not None else None
        return self._tokens(), accepted

    def _tokens(self) -> list[SampledToken]:
        token_ids = self._on_host[0].tolist()
        if len(self._on_host) == 1:
            return [SampledToken(t) for t in token_ids]
        chosen, top_values, top_ids = (t.tolist() for t in self._on_host[1:])
        out = []
        for row, n in enumerate(self.logprob_counts):
            if n is None:
                out.append(SampledToken(token_ids[row]))
            else:
                out.append(
                    SampledToken(
                        token_ids[row], chosen[row], list(zip(top_ids[row][:n], top_values[row][:n], strict=True))
                    )
                )
        return out
