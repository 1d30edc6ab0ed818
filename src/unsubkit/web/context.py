"""What every route needs, built once by :func:`unsubkit.web.app.create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..service import Unsubkit
from ..settings import Settings
from .writer import Writer

__all__ = ["Metrics", "WebContext"]


class Metrics:
    """Per-app registry (several apps in one test process must not share counters)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.oneclick = Counter(
            "unsubkit_oneclick_requests", "One-click POSTs by HTTP status",
            ["status"], registry=self.registry,
        )
        #: The success counter, bound once (``labels()`` looks the child up under a lock).
        self.oneclick_ok = self.oneclick.labels("200")
        self.landing = Counter(
            "unsubkit_landing_views", "Landing page views", registry=self.registry
        )
        self.batches = Gauge(
            "unsubkit_group_commit_batches", "Transactions committed by the writer",
            registry=self.registry,
        )
        self.committed = Gauge(
            "unsubkit_group_commit_changes", "Consent changes committed by the writer",
            registry=self.registry,
        )
        self.writer_restarts = Gauge(
            "unsubkit_writer_process_restarts", "Times the writer process died and was replaced",
            registry=self.registry,
        )


@dataclass
class WebContext:
    kit: Unsubkit
    settings: Settings
    writer: Writer
    templates: Environment
    metrics: Metrics
