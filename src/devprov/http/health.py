"""Liveness, readiness and metrics for operators and load balancers
(docs/operations.md#health-and-readiness, docs/operations.md#metrics).

``/healthz`` answers 200 whenever the process serves requests: it touches nothing else.
``/readyz`` answers 200 when the database answers a trivial query and its schema is at the
code's head revision, else 503 with the reason in JSON. Neither needs credentials, and neither
reaches the device refusal log: probes are not devices. ``/metrics`` needs the admin token.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devprov.bootstrap import Container
from devprov.core.error import DevprovError, InvalidCredentialsError
from devprov.http.error import arm_error_response, new_tracking_id
from devprov.http.metrics import PrometheusMetrics
from devprov.http.request import bearer_token, log_api_refusal
from devprov.storage.readiness import readiness_problem

log = logging.getLogger("devprov.http")


def routes(container: Container) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        # On a worker thread: a database that does not answer may take its connect timeout,
        # and the event loop serves devices meanwhile.
        problem = await container.storage.run(readiness_problem, container.engine)
        if problem is not None:
            log.debug("not ready: %s", problem)
            return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        try:
            if not container.is_admin_token(bearer_token(request)):
                raise InvalidCredentialsError("the bearer token is not this server's admin token")
        except DevprovError as exc:
            tracking_id = new_tracking_id()
            await log_api_refusal(container, log, request, exc, tracking_id, action="metrics")
            return arm_error_response(exc, tracking_id)
        exporter = container.metrics
        if not isinstance(exporter, PrometheusMetrics):
            return JSONResponse({"status": "no metrics exporter"}, status_code=404)
        body, content_type = exporter.render()
        return Response(body, media_type=content_type)

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
