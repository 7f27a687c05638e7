"""A trainer's client for pushing new weights into a running `shoal runtime` (RLHF, GRPO), in the
style of vLLM's RLHF examples: pause generation, push the weights, resume, without a restart.

    sync = WeightSync("10.0.0.7:50051", token)
    sync.init_group("10.0.0.5", 29600, backend="nccl")   # once; the trainer is rank 0
    sync.pause("keep")                                   # requests in flight keep their state
    sync.broadcast(model.named_parameters(), version="step-120")
    sync.resume()

`broadcast` sends tensors through a torch.distributed group (NCCL between GPUs, gloo on CPU) made
for this pair alone, so neither side's default group is touched. `stream` sends them over gRPC
instead (no group needed, slower), and `update_from_path` has the runtime read safetensors files it
can see. Names are the checkpoint's (HF) names; dtypes must be the runtime's (GetModelInfo.dtype).
"""

import datetime
from collections.abc import Iterable, Iterator

import grpc
import torch

from shoal.v1 import runtime_admin_pb2 as apb
from shoal.v1 import runtime_admin_pb2_grpc

CHUNK_BYTES = 1 << 20  # well under gRPC's default 4 MiB message limit
GROUP_TIMEOUT = datetime.timedelta(minutes=10)
MODES = {"wait": apb.PAUSE_MODE_WAIT, "keep": apb.PAUSE_MODE_KEEP, "abort": apb.PAUSE_MODE_ABORT}


class WeightSync:
    def __init__(self, target: str, token: str, timeout_s: float = 600.0):
        self.channel = grpc.insecure_channel(target)
        self.admin = runtime_admin_pb2_grpc.RuntimeAdminStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.timeout_s = timeout_s
        self.group = None

    def close(self) -> None:
        self.channel.close()

    def pause(self, mode: str = "keep") -> apb.LifecycleState:
        return self.admin.Pause(apb.PauseRequest(mode=MODES[mode]), metadata=self.metadata, timeout=self.timeout_s)

    def resume(self) -> apb.LifecycleState:
        return self.admin.Resume(apb.ResumeRequest(), metadata=self.metadata, timeout=self.timeout_s)

    def state(self) -> apb.LifecycleState:
        return self.admin.GetLifecycle(apb.GetLifecycleRequest(), metadata=self.metadata, timeout=self.timeout_s)

    def update_from_path(self, path: str, version: str, keep_prefix_cache: bool = False) -> apb.LifecycleState:
        request = apb.UpdateWeightsRequest(path=path, version=version, keep_prefix_cache=keep_prefix_cache)
        return self.admin.UpdateWeights(request, metadata=self.metadata, timeout=self.timeout_s)

    def stream(self, tensors: Iterable[tuple[str, torch.Tensor]], version: str) -> apb.LifecycleState:
        named = [(name, tensor.detach().contiguous().cpu()) for name, tensor in tensors]
        manifest = _manifest(named, version)
        return self.admin.StreamWeights(_chunks(manifest, named), metadata=self.metadata, timeout=self.timeout_s)

    def init_group(self, master_address: str, master_port: int, backend: str = "nccl") -> None:
        """Forms the two-member group: this process (rank 0) hosts the store, the runtime joins."""
        import torch.distributed as dist

        request = apb.InitWeightGroupRequest(
            master_address=master_address, master_port=master_port, world_size=2, rank=1, backend=backend
        )
        joined = self.admin.InitWeightGroup.future(request, metadata=self.metadata, timeout=self.timeout_s)
        store = dist.TCPStore(master_address, master_port, 2, is_master=True, timeout=GROUP_TIMEOUT)
        if backend == "gloo":
            group = dist.ProcessGroupGloo(store, 0, 2, GROUP_TIMEOUT)
        else:
            group = dist.ProcessGroupNCCL(store, 0, 2)
        joined.result()
        self.group = group

    def broadcast(self, tensors: Iterable[tuple[str, torch.Tensor]], version: str) -> apb.LifecycleState:
        """Sends each tensor through the group while the runtime receives and writes them one by one."""
        import torch.distributed as dist

        if self.group is None:
            raise RuntimeError("call init_group first")
        named = [(name, tensor.detach().contiguous()) for name, tensor in tensors]
        request = apb.ReceiveWeightsRequest(manifest=_manifest(named, version))
        received = self.admin.ReceiveWeights.future(request, metadata=self.metadata, timeout=self.timeout_s)
        options = dist.BroadcastOptions()
        options.rootRank = 0
        for _, tensor in named:
            self.group.broadcast([tensor], options).wait()
        return received.result()


def _manifest(named: list[tuple[str, torch.Tensor]], version: str) -> apb.WeightsManifest:
    return apb.WeightsManifest(
        version=version,
        tensors=[
            apb.TensorSpec(name=name, shape=list(t.shape), dtype=str(t.dtype).removeprefix("torch."))
            for name, t in named
        ],
    )


def _chunks(manifest: apb.WeightsManifest, named: list[tuple[str, torch.Tensor]]) -> Iterator[apb.WeightsChunk]:
    yield apb.WeightsChunk(manifest=manifest)
    for _, tensor in named:
        data = tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        for start in range(0, len(data), CHUNK_BYTES):
            yield apb.WeightsChunk(data=data[start : start + CHUNK_BYTES])
