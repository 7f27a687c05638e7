"""WebSocket realtime sessions (/v1/realtime): several turns per connection, cancel, backpressure."""
