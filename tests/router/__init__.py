"""Router tests: pure traffic logic, backends, the OpenAI/gRPC/WebSocket surfaces, and end to end."""
