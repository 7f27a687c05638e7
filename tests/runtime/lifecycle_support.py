"""For the lifecycle tests: a runtime with its admin service on, a perturbed copy of the embedded
model's weights, and HF's model to say what any mix of old and new weights must produce."""

import secrets
from pathlib import Path

import grpc
import torch

from shoal.v1 import runtime_admin_pb2 as apb
from shoal.v1 import runtime_admin_pb2_grpc
from tests.runtime.server_process import RuntimeProcess

PERTURBATION = 0.05  # relative noise: enough to change greedy outputs, not enough to break the model


def admin_runtime(tmp_path: Path, *flags: str) -> tuple[RuntimeProcess, str]:
    token = secrets.token_hex(16)
    token_file = tmp_path / "admin-token"
    token_file.write_text(token)
    runtime = RuntimeProcess(
        "--kv-cache-memory", "128MiB", "--max-num-batched-tokens", "512", "--admin-token-file", str(token_file), *flags
    )
    return runtime.wait_ready(), token


def admin_stub(runtime: RuntimeProcess) -> runtime_admin_pb2_grpc.RuntimeAdminStub:
    return runtime_admin_pb2_grpc.RuntimeAdminStub(grpc.insecure_channel(runtime.target))


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def perturbed_weights(source_dir: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for file in sorted(source_dir.glob("*.safetensors")):
        for name, tensor in load_file(str(file)).items():
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            weights[name] = (tensor.float() * (1 + PERTURBATION * noise)).to(tensor.dtype)
    return weights


def save_weights(weights: dict[str, torch.Tensor], directory: Path) -> Path:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(directory / "model.safetensors"))
    return directory


def hf_with(hf_model, weights: dict[str, torch.Tensor]):
    """A copy of HF's model holding these weights."""
    import copy

    model = copy.deepcopy(hf_model)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    if "lm_head.weight" in missing:
        model.tie_weights()
    return model


@torch.no_grad()
def greedy_after_switch(old, new, prompt: list[int], old_tokens: list[int], num_new: int) -> list[int]:
    """The tokens greedy decoding gives when the old weights computed the K/V of the prompt and of
    all old tokens but the last, and the new weights run from there on: the state a runtime paused
    (KEEP) and updated in place carries on from."""
    context = torch.tensor([prompt + old_tokens[:-1]])
    past = old(context, use_cache=True).past_key_values
    token, produced = old_tokens[-1], []
    for _ in range(num_new):
        out = new(torch.tensor([[token]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        token = int(out.logits[0, -1].argmax())
        produced.append(token)
    return produced


def state(stub, token: str) -> apb.LifecycleState:
    return stub.GetLifecycle(apb.GetLifecycleRequest(), metadata=bearer(token))
