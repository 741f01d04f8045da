"""The classifier of one S3/MinIO call through the pool (:func:`call_classifier`): each failed
attempt judged by :func:`mcresolve.minio.classify.classify_exception`, given what the call's
earlier attempts said. :class:`~mcresolve.minio.ResilientMinio`, its asyncio twin and the
sidecar's http mode all judge attempts through it."""

from __future__ import annotations

import time
from collections.abc import Callable

from mcresolve.balancer.outlier import FailureKind
from mcresolve.minio.classify import classify_exception
from mcresolve.minio.errors import TriedAttempt
from mcresolve.pool.planner import AttemptContext, Fault, VerdictLike

__all__ = ["TriedAttempt", "call_classifier"]


def call_classifier(
    tried: list[TriedAttempt],
    http_method: str,
    idempotent: bool,
    replayable: Callable[[], bool] | None,
) -> Callable[[BaseException, AttemptContext], VerdictLike]:
    """The classifier of one call (pass it as ``pool.call(..., classify=)``): MinIO's verdict of
    each failed attempt, given what the call's earlier attempts (appended to ``tried``, hedges
    included) said. ``http_method``: the request's method; ``idempotent``: the caller's
    declaration; ``replayable``: whether the request body can still be sent again (None:
    always)."""

    def classify(exc: BaseException, context: AttemptContext) -> VerdictLike:
        here = context.endpoint.key
        # "The same failure from every endpoint" (a hung cluster, 5xx everywhere) needs the
        # other endpoints to have been reached: one that refused says nothing about the
        # cluster (a PUT timing out on one node while the other is down is that node's).
        latest = {t.endpoint.key: t.verdict for t in tried if t.endpoint.key != here}
        reached = not any(
            v.error_class is Fault.NODE and v.failure_kind is FailureKind.CONNECT
            for v in latest.values()
        )
        verdict = classify_exception(
            exc,
            method=http_method,
            from_every_endpoint=context.every_endpoint_tried and reached,
            confirmed_elsewhere=any(
                t.verdict.error_class is Fault.CLUSTER and t.endpoint.key != here for t in tried
            ),
            body_replayable=replayable() if replayable is not None else True,
            idempotent=idempotent,
            now_epoch=time.time(),
        )
        tried.append(TriedAttempt(context.endpoint, exc, verdict))
        return verdict

    return classify
