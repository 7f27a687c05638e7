from shoal.v1 import runtime_pb2 as _runtime_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QosClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QOS_CLASS_UNSPECIFIED: _ClassVar[QosClass]
    QOS_CLASS_REALTIME: _ClassVar[QosClass]
    QOS_CLASS_BATCH: _ClassVar[QosClass]
QOS_CLASS_UNSPECIFIED: QosClass
QOS_CLASS_REALTIME: QosClass
QOS_CLASS_BATCH: QosClass

class InferenceRequest(_message.Message):
    __slots__ = ("model", "text", "token_ids", "chat", "sampling", "qos_class", "session_id", "n")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    QOS_CLASS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    token_ids: _runtime_pb2.TokenIds
    chat: _runtime_pb2.ChatMessages
    sampling: _runtime_pb2.SamplingParams
    qos_class: QosClass
    session_id: str
    n: int
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Union[_runtime_pb2.TokenIds, _Mapping]] = ..., chat: _Optional[_Union[_runtime_pb2.ChatMessages, _Mapping]] = ..., sampling: _Optional[_Union[_runtime_pb2.SamplingParams, _Mapping]] = ..., qos_class: _Optional[_Union[QosClass, str]] = ..., session_id: _Optional[str] = ..., n: _Optional[int] = ...) -> None: ...

class InferenceResponse(_message.Message):
    __slots__ = ("id", "model", "text", "token_ids", "logprobs", "finish_reason", "stop_reason", "usage", "index", "tool_calls")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    logprobs: _containers.RepeatedCompositeFieldContainer[_runtime_pb2.TokenLogprob]
    finish_reason: _runtime_pb2.FinishReason
    stop_reason: str
    usage: _runtime_pb2.Usage
    index: int
    tool_calls: _containers.RepeatedCompositeFieldContainer[_runtime_pb2.ToolCallDelta]
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., logprobs: _Optional[_Iterable[_Union[_runtime_pb2.TokenLogprob, _Mapping]]] = ..., finish_reason: _Optional[_Union[_runtime_pb2.FinishReason, str]] = ..., stop_reason: _Optional[str] = ..., usage: _Optional[_Union[_runtime_pb2.Usage, _Mapping]] = ..., index: _Optional[int] = ..., tool_calls: _Optional[_Iterable[_Union[_runtime_pb2.ToolCallDelta, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, models: _Optional[_Iterable[str]] = ...) -> None: ...
