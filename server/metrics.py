"""Prometheus metrics of one app, in a registry of its own so that several apps can coexist."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Every metric the server exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.open_connections = Gauge(
            "digits_open_connections", "Open WebSocket connections.", registry=self.registry
        )
        self.connections_refused = Counter(
            "digits_connections_refused",
            "WebSocket upgrades refused, by reason (origin, capacity, loading, draining).",
            ["reason"],
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "digits_connections_closed",
            "WebSocket connections the server closed for a limit, by reason (idle, rate_limited).",
            ["reason"],
            registry=self.registry,
        )
        self.snapshots_received = Counter(
            "digits_snapshots_received",
            "Pictures received, by transport (ws or http).",
            ["transport"],
            registry=self.registry,
        )
        self.snapshots_coalesced = Counter(
            "digits_snapshots_coalesced",
            "WebSocket snapshots skipped because a newer one from the same client overtook them.",
            registry=self.registry,
        )
        self.predictions_sent = Counter(
            "digits_predictions_sent",
            "Predictions sent, by transport.",
            ["transport"],
            registry=self.registry,
        )
        self.predictions_dropped = Counter(
            "digits_predictions_dropped",
            "Predictions replaced by a newer one before a slow reader took them.",
            registry=self.registry,
        )
        self.errors = Counter(
            "digits_errors",
            "Error answers, by protocol error code and transport.",
            ["code", "transport"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "digits_inference_batch_size",
            "Pictures per model call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "digits_inference_seconds",
            "Time of one batched model call.",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.decode_seconds = Histogram(
            "digits_decode_seconds",
            "Time to decode and preprocess one picture.",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.prediction_latency_seconds = Histogram(
            "digits_prediction_latency_seconds",
            "Time from receiving a picture to sending its answer, by transport.",
            ["transport"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )

        self.splits = Counter(
            "digits_splits",
            "Drawings rejected as one digit and split into pieces, to be read as a number:"
            " in a second pass after the whole was read, or in one pass with it (ink that"
            " was split before: a number being written).",
            ["passes"],
            registry=self.registry,
        )
        self.split_groups = Counter(
            "digits_split_groups",
            "Groups of pieces read when drawings were split: drawn and scored anew, or kept"
            " from the connection's previous split.",
            ["source"],
            registry=self.registry,
        )
        self.decode_restarts = Counter(
            "digits_decode_restarts",
            "Times the decode processes were replaced after one of them died.",
            registry=self.registry,
        )
        self.waiting_uploads = Gauge(
            "digits_waiting_uploads",
            "HTTP uploads admitted and not yet answered.",
            registry=self.registry,
        )
        self.waiting_requests = Gauge(
            "digits_waiting_requests",
            "Pictures and drawings waiting for a decode process.",
            registry=self.registry,
        )
        self.corrections_stored = Counter(
            "digits_corrections_stored",
            "Corrections committed to the store.",
            registry=self.registry,
        )
        self.corrections_refused = Counter(
            "digits_corrections_refused",
            "Corrections refused, by error code (nothing of them is stored).",
            ["code"],
            registry=self.registry,
        )
        self.corrections_deleted = Counter(
            "digits_corrections_deleted",
            "Corrections deleted by an administrator.",
            registry=self.registry,
        )
        self.limits = Gauge(
            "digits_limit",
            "The server's limits, by name (as the settings call them).",
            ["name"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)
