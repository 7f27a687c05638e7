"""`shoal generate`: a one-line gRPC client that streams a completion to stdout."""

import argparse
import sys

import grpc

from shoal.constants import RUNTIME_GRPC_PORT
from shoal.v1 import runtime_pb2 as pb
from shoal.v1 import runtime_pb2_grpc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="the user's message (or raw text with --raw)")
    parser.add_argument("--target", default=f"localhost:{RUNTIME_GRPC_PORT}", help="runtime gRPC address")
    parser.add_argument("--raw", action="store_true", help="send the prompt as plain text, without the chat template")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)


def build_request(args: argparse.Namespace) -> pb.GenerateRequest:
    sampling = pb.SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)
    if args.seed is not None:
        sampling.seed = args.seed
    if args.raw:
        return pb.GenerateRequest(text=args.prompt, sampling=sampling)
    chat = pb.ChatMessages(messages=[pb.ChatMessage(role="user", content=args.prompt)])
    return pb.GenerateRequest(chat=chat, sampling=sampling)


def run(args: argparse.Namespace) -> int:
    with grpc.insecure_channel(args.target) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        try:
            for response in stub.Generate(build_request(args)):
                sys.stdout.write(response.text)
                sys.stdout.flush()
        except grpc.RpcError as error:
            print(f"\nshoal generate: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    sys.stdout.write("\n")
    return 0
