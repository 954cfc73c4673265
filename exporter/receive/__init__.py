"""Receive: OTLP over gRPC and HTTP (protobuf and JSON, gzip), handed to the write pipeline."""
