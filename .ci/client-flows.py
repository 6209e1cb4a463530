#!/usr/bin/env python3
"""The seed's flows through a client generated from the served OpenAPI document.

Run by .ci/client-flows (which starts redis-server, the runners and the generator), in two
phases against one runner's API:

  phase1  (no worker runs yet) enqueue with typed arguments, priorities and a delay, read
          the jobs back, list pending, cancel, register/disable/enable/run/delete
          schedules, every stats endpoint, the document itself;
  phase2  (a worker runner has started) wait for the jobs to complete and read their
          results, dead-letter list/retry/clear, stats again, and /metrics parsed with the
          official Prometheus client.

Every call goes through the generated client's typed functions. A response fails the run
when its status is not the one expected, when it does not parse into the generated model,
when it carries a field its model does not declare (the models keep unknown fields in
`additional_properties`) or lacks one the model declares, or when it does not validate
against the document's own schema for that operation and status (types, formats, required
and nullable fields): a field the document and the server disagree on fails the run. So
does an operation of the document that no flow calls.

Usage: client-flows.py PHASE BASE_URL TOKEN DOCUMENT STATE_FILE (the generated package
`jobs_api_client` on PYTHONPATH).
"""

import datetime
import json
import sys
import time
import uuid

import attrs
from openapi_schema_validator import OAS31Validator
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from jobs_api_client import AuthenticatedClient, Client
from jobs_api_client.api.dlq import (
    clear_dead_letter_queue,
    list_dead_letter_jobs,
    retry_dead_letter_job,
)
from jobs_api_client.api.health import get_health
from jobs_api_client.api.jobs import (
    bulk_jobs,
    cancel_job,
    delete_job,
    enqueue_job,
    get_job,
    get_job_result,
    list_jobs,
    list_pending_jobs,
    retry_job,
)
from jobs_api_client.api.meta import get_metrics, get_openapi_document
from jobs_api_client.api.queues import list_limits, list_queues, pause_queue, resume_queue
from jobs_api_client.api.scheduler import (
    delete_schedule,
    delete_schedule_named_register,
    disable_schedule,
    enable_schedule,
    get_scheduler_stats,
    list_schedules,
    register_schedule,
    run_schedule,
)
from jobs_api_client.api.stats import (
    get_queue_stats,
    get_stats,
    get_throughput,
    get_worker_stats,
    list_handlers,
)
from jobs_api_client.models import (
    BulkAction,
    BulkReport,
    BulkRequest,
    CancelOutcome,
    CancelResponse,
    ClearResponse,
    DeleteResponse,
    EnqueueRequest,
    EnqueueResponse,
    ErrorBody,
    FlatInterval,
    FlatIntervalScheduleType,
    FlatOnce,
    FlatOnceScheduleType,
    FullStatsResponse,
    GetOpenapiDocumentResponse200,
    Health,
    HealthResponse,
    HandlersResponse,
    Job,
    JobListResponse,
    JobPageResponse,
    JobPriority,
    JobResultResponse,
    JobStatus,
    LimitsResponse,
    NestedRegisterRequest,
    QueuePauseResponse,
    QueueStatsView,
    QueuesResponse,
    RetryResponse,
    RunResponse,
    ScheduleInfo,
    ScheduleListResponse,
    SchedulerStats,
    ScheduleViewType1,
    ScheduleViewType1Type,
    ThroughputResponse,
    UnregisterResponse,
    WorkersResponse,
)
from jobs_api_client.types import Unset

# How long a job may take to reach the state a flow waits for.
WAIT_SECONDS = 30.0
POLL_SECONDS = 0.1


class FlowError(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise FlowError(what)


class Api:
    """The generated client, with every call checked against the document."""

    def __init__(self, base, token, document):
        self.doc = document
        self.client = AuthenticatedClient(
            base_url=base, token=token, raise_on_unexpected_status=True, timeout=10.0
        )
        self.anonymous = Client(base_url=base, raise_on_unexpected_status=True, timeout=10.0)
        self.ops = {}
        for path, item in document["paths"].items():
            for method, op in item.items():
                if isinstance(op, dict) and "operationId" in op:
                    self.ops[op["operationId"]] = (method.upper(), path, op)
        self.called = set()

    def call(self, module, status, model, anonymous=False, **kwargs):
        """Calls an operation through the generated client; returns the parsed model."""
        op_id = module.__name__.rsplit(".", 1)[-1]
        method, path, op = self.ops[op_id]
        client = self.anonymous if anonymous else self.client
        what = f"{method} {path} ({op_id})"
        try:
            r = module.sync_detailed(client=client, **kwargs)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # The generated parser met a body its model does not describe.
            raise FlowError(f"{what}: the response does not parse: {e!r}") from e
        body = r.content.decode("utf-8", "replace")
        check(r.status_code == status, f"{what}: expected {status}, got {r.status_code}: {body}")
        check(isinstance(r.parsed, model),
              f"{what}: the response does not parse into {model.__name__}: {r.parsed!r}")
        declared = op["responses"].get(str(status))
        check(declared is not None, f"{what}: status {status} is not in the document")
        (content_type, media), = declared["content"].items()
        got_type = r.headers.get("content-type", "")
        check(got_type.split(";")[0] == content_type.split(";")[0],
              f"{what}: content type {got_type!r}, the document says {content_type!r}")
        if content_type == "application/json":
            self.validate(what, media["schema"], json.loads(r.content))
            differ = field_disagreements(r.parsed)
            check(not differ, f"{what}: the document and the response disagree: {differ}")
        self.called.add(op_id)
        return r.parsed

    def validate(self, what, schema, instance):
        root = dict(schema, components=self.doc["components"])
        v = OAS31Validator(root, format_checker=OAS31Validator.FORMAT_CHECKER)
        errors = sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
            raise FlowError(f"{what}: the body does not fit the document:\n" + "\n".join(lines)
                            + f"\nbody: {json.dumps(instance)[:2000]}")

    def error(self, module, status, code, **kwargs):
        """An error response: the documented status, the ErrorBody model, its code."""
        body = self.call(module, status, ErrorBody, **kwargs)
        check(body.error.code == code, f"{module.__name__}: code {body.error.code}, not {code}")
        return body


def field_disagreements(value, at="$"):
    """Fields the server sent that the model does not declare (a generated model keeps them
    in `additional_properties`; a free-form model, with no declared field, holds its whole
    object there), and fields the model declares that the server left out (it sends every
    field of its responses, `null` when empty)."""
    found = []
    if attrs.has(type(value)):
        fields = [f for f in attrs.fields(type(value)) if f.name != "additional_properties"]
        extra = getattr(value, "additional_properties", {})
        if fields and extra:
            found.append(f"{at} ({type(value).__name__}): not in the document: {sorted(extra)}")
        for f in fields:
            v = getattr(value, f.name)
            if isinstance(v, Unset):
                found.append(f"{at}.{f.alias or f.name} ({type(value).__name__}): "
                             "in the document, not in the response")
            found += field_disagreements(v, f"{at}.{f.name}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += field_disagreements(v, f"{at}[{i}]")
    return found


def wait_for(what, probe):
    """Calls `probe` until it returns something truthy, for at most WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise FlowError(f"timed out after {WAIT_SECONDS} s waiting for {what}")
        time.sleep(POLL_SECONDS)


def ids(jobs):
    return [str(j.id) for j in jobs]


def enqueue(api, **fields):
    res = api.call(enqueue_job, 201, EnqueueResponse, body=EnqueueRequest(**fields))
    return str(res.job_id)


def job(api, job_id):
    return api.call(get_job, 200, Job, job_id=uuid.UUID(job_id))


def phase1(api, state):
    health = api.call(get_health, 200, HealthResponse, anonymous=True)
    check(health.status == Health.HEALTHY, f"health: {health}")
    check(health.backend == "redis", f"health: backend {health.backend}")
    check(not health.workers_running and health.scheduler_running, f"health: {health}")
    api.error(get_stats, 401, "unauthorized", anonymous=True)

    # Typed arguments: the handler's own JSON Schema, as the API lists it, accepts ours.
    handlers = api.call(list_handlers, 200, HandlersResponse).handlers
    sync = next((h for h in handlers if h.name == "sync_portfolio"), None)
    check(sync is not None, f"no sync_portfolio handler in {[h.name for h in handlers]}")
    schema = sync.args_schema.additional_properties
    check("user_id" in schema.get("properties", {}), f"sync_portfolio's args schema: {schema}")
    OAS31Validator(schema).validate({"user_id": "user-001"})
    check(not OAS31Validator(schema).is_valid({"user": 1}), "the args schema accepts anything")

    low = enqueue(api, name="sync_portfolio", args={"user_id": "user-001"},
                  priority=JobPriority.LOW)
    high = enqueue(api, name="sync_portfolio", args={"user_id": "user-002"},
                   priority=JobPriority.HIGH, max_retries=2, timeout=30.0, user_id="user-002")
    # Another user: sync_portfolio is unique per user (user-001's job above holds its key).
    delayed = enqueue(api, name="sync_portfolio", args={"user_id": "user-009"},
                      delay_seconds=3600.0)
    again = api.call(enqueue_job, 200, EnqueueResponse,
                     body=EnqueueRequest(name="sync_portfolio", args={"user_id": "user-001"}))
    check(str(again.job_id) == low and again.duplicate, f"a duplicate of user-001's sync: {again}")
    # An unknown user fails sync_portfolio permanently: straight to the dead-letter queue.
    doomed = enqueue(api, name="sync_portfolio", args={"user_id": "nobody"},
                     priority=JobPriority.CRITICAL)
    api.error(enqueue_job, 422, "invalid_args",
              body=EnqueueRequest(name="sync_portfolio", args={"user": 1}))
    api.error(enqueue_job, 404, "handler_not_found", body=EnqueueRequest(name="no_such_task"))

    j = job(api, high)
    check(j.status == JobStatus.PENDING and j.priority == JobPriority.HIGH, f"{j}")
    check(j.max_retries == 2 and j.timeout == 30 and j.user_id == "user-002", f"{j}")
    check(j.args == {"user_id": "user-002"}, f"args {j.args}")
    d = job(api, delayed)
    check(d.status == JobStatus.PENDING and isinstance(d.scheduled_at, datetime.datetime), f"{d}")
    ahead = (d.scheduled_at - d.created_at).total_seconds()
    check(3590 <= ahead <= 3610, f"the delayed job runs {ahead} s after its creation")
    r = api.call(get_job_result, 200, JobResultResponse, job_id=uuid.UUID(low))
    check(r.status == JobStatus.PENDING and not r.result, f"{r}")

    # Ready jobs in the order they will run; the delayed one is not ready.
    pending = api.call(list_pending_jobs, 200, JobListResponse, limit=100)
    check(pending.count == len(pending.jobs), f"count {pending.count}")
    ours = [i for i in ids(pending.jobs) if i in (low, high, delayed, doomed)]
    check(ours == [doomed, high, low], f"pending order {ours}")
    # Jobs by state: the delayed one is listed as scheduled, filtered by handler and user.
    scheduled = api.call(list_jobs, 200, JobPageResponse, state="scheduled",
                         name="sync_portfolio", limit=100)
    check(delayed in ids(scheduled.jobs) and low not in ids(scheduled.jobs),
          f"scheduled listing {ids(scheduled.jobs)}")
    check(scheduled.counts.scheduled >= 1, f"counts {scheduled.counts}")
    api.error(list_jobs, 400, "invalid_request", state="nonsense")
    # Retry now is for a retrying or dead job: a pending one is a conflict.
    api.error(retry_job, 409, "invalid_state", job_id=uuid.UUID(low))
    only_high = api.call(list_pending_jobs, 200, JobListResponse, priority=JobPriority.HIGH)
    check(high in ids(only_high.jobs) and low not in ids(only_high.jobs), "priority filter")
    queue = api.call(get_queue_stats, 200, QueueStatsView)
    check(queue.scheduled >= 1 and queue.pending.critical >= 1 and queue.pending.low >= 1,
          f"{queue}")

    # Named queues: a job sent to one is listed there; pausing and resuming it is seen by all.
    listed = api.call(list_queues, 200, QueuesResponse)
    check("default" in [q.name for q in listed.queues], f"queues {listed}")
    parked = enqueue(api, name="sync_portfolio", args={"user_id": "user-003"}, queue="ci_flows",
                     priority=JobPriority.NORMAL)
    check(job(api, parked).queue == "ci_flows", f"{job(api, parked)}")
    p = api.call(pause_queue, 200, QueuePauseResponse, name="ci_flows")
    check(p.paused and p.changed and p.name == "ci_flows", f"{p}")
    listed = api.call(list_queues, 200, QueuesResponse)
    mine = next((q for q in listed.queues if q.name == "ci_flows"), None)
    check(listed.count == len(listed.queues), f"{listed}")
    check(mine is not None and mine.paused and mine.total_pending == 1
          and mine.pending.normal == 1, f"ci_flows in {listed}")
    r = api.call(resume_queue, 200, QueuePauseResponse, name="ci_flows")
    check(not r.paused and r.changed, f"{r}")
    again = api.call(resume_queue, 200, QueuePauseResponse, name="ci_flows")
    check(not again.changed, f"{again}")
    api.error(pause_queue, 400, "invalid_queue", name="a:b")
    api.error(enqueue_job, 400, "invalid_queue",
              body=EnqueueRequest(name="sync_portfolio", args={"user_id": "u"}, queue="a b"))
    api.call(cancel_job, 200, CancelResponse, job_id=uuid.UUID(parked))

    # Limits: the limiters in use, each with its bound; a count that matches the list.
    limits = api.call(list_limits, 200, LimitsResponse)
    check(limits.count == len(limits.limiters) and limits.parked >= 0, f"{limits}")
    for lim in limits.limiters:
        check(lim.max >= 1 and lim.name.endswith(lim.key), f"{lim}")

    c = api.call(cancel_job, 200, CancelResponse, job_id=uuid.UUID(delayed))
    check(c.outcome == CancelOutcome.CANCELLED and str(c.job_id) == delayed, f"{c}")
    check(job(api, delayed).status == JobStatus.CANCELLED, "the cancelled job")
    api.error(cancel_job, 409, "invalid_state", job_id=uuid.UUID(delayed))
    gone = api.call(delete_job, 200, DeleteResponse, job_id=uuid.UUID(delayed))
    check(gone.deleted and str(gone.job_id) == delayed, f"{gone}")
    api.error(get_job, 404, "job_not_found", job_id=uuid.UUID(delayed))
    api.error(delete_job, 409, "invalid_state", job_id=uuid.UUID(low))

    # Bulk: cancel one user's delayed jobs, then delete them, one page each.
    for n in range(3):
        enqueue(api, name="sync_portfolio", args={"user_id": f"bulk-{n}"}, user_id="ci-bulk",
                delay_seconds=3600.0)
    done = api.call(bulk_jobs, 200, BulkReport, body=BulkRequest(
        action=BulkAction.CANCEL, state="scheduled", user_id="ci-bulk", limit=1000))
    check(done.matched == 3 and done.succeeded == 3 and not done.failures, f"{done}")
    done = api.call(bulk_jobs, 200, BulkReport, body=BulkRequest(
        action=BulkAction.DELETE, state="cancelled", user_id="ci-bulk"))
    check(done.matched == 3 and done.succeeded == 3, f"{done}")
    api.error(bulk_jobs, 400, "invalid_request",
              body=BulkRequest(action=BulkAction.DELETE, state="pending"))
    api.error(get_job, 404, "job_not_found", job_id=uuid.uuid4())

    # Schedules, in each form: flat interval, nested cron, flat once; and one named
    # `register`.
    every = api.call(register_schedule, 200, ScheduleInfo, body=FlatInterval(
        name="ci_flows_interval", job_name="sync_portfolio",
        schedule_type=FlatIntervalScheduleType.INTERVAL, interval_seconds=3600,
        args={"user_id": "user-003"}, priority=JobPriority.HIGH))
    check(every.schedule_type == "interval" and every.interval_seconds == 3600, f"{every}")
    check(every.enabled and every.priority == JobPriority.HIGH, f"{every}")
    cron = api.call(register_schedule, 200, ScheduleInfo, body=NestedRegisterRequest(
        name="ci_flows_cron", job_name="sync_portfolio", args={"user_id": "user-001"},
        schedule=ScheduleViewType1(type_=ScheduleViewType1Type.CRON,
                                   expression="30 9 * * 1-5", timezone="Europe/Paris")))
    check(cron.schedule_type == "cron" and cron.cron_expression == "30 9 * * 1-5", f"{cron}")
    check(cron.timezone == "Europe/Paris", f"{cron}")
    at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) \
        + datetime.timedelta(days=365)
    once = api.call(register_schedule, 200, ScheduleInfo, body=FlatOnce(
        name="register", job_name="sync_portfolio", schedule_type=FlatOnceScheduleType.ONCE,
        run_at=at, args={"user_id": "user-002"}))
    check(once.schedule_type == "once" and once.run_at == at, f"{once}")
    api.error(register_schedule, 400, "invalid_schedule", body=NestedRegisterRequest(
        name="ci_flows_bad", job_name="sync_portfolio", args={"user_id": "user-001"},
        schedule=ScheduleViewType1(type_=ScheduleViewType1Type.CRON, expression="61 * * * *")))

    listed = api.call(list_schedules, 200, ScheduleListResponse)
    names = {t.name for t in listed.tasks}
    check({"ci_flows_interval", "ci_flows_cron", "register"} <= names, f"schedules {names}")
    check(listed.count == len(listed.tasks), f"count {listed.count}")
    off = api.call(disable_schedule, 200, ScheduleInfo, name="ci_flows_interval")
    check(not off.enabled, f"{off}")
    on = api.call(enable_schedule, 200, ScheduleInfo, name="ci_flows_interval")
    check(on.enabled and isinstance(on.next_run, datetime.datetime), f"{on}")
    ran = api.call(run_schedule, 200, RunResponse, name="ci_flows_interval")
    check(ran.name == "ci_flows_interval", f"{ran}")
    fired = job(api, str(ran.job_id))
    check(fired.name == "sync_portfolio" and fired.args == {"user_id": "user-003"}, f"{fired}")
    check(fired.priority == JobPriority.HIGH, f"{fired}")
    sched = api.call(get_scheduler_stats, 200, SchedulerStats)
    check(sched.running and sched.total_tasks == len(sched.tasks) >= 3, f"{sched}")
    check(sched.enabled_tasks + sched.disabled_tasks == sched.total_tasks, f"{sched}")
    for name in ("ci_flows_interval", "ci_flows_cron"):
        gone = api.call(delete_schedule, 200, UnregisterResponse, name=name)
        check(gone.removed and gone.name == name, f"{gone}")
        api.error(delete_schedule, 404, "schedule_not_found", name=name)
        api.error(enable_schedule, 404, "schedule_not_found", name=name)
    gone = api.call(delete_schedule_named_register, 200, UnregisterResponse)
    check(gone.removed and gone.name == "register", f"{gone}")
    api.error(delete_schedule_named_register, 404, "schedule_not_found")

    full = api.call(get_stats, 200, FullStatsResponse)
    check(not full.running and full.queue.counters.enqueued >= 5, f"{full.queue}")
    check("sync_portfolio" in [h.name for h in full.handlers], "handlers in stats")
    api.call(get_throughput, 200, ThroughputResponse)
    api.call(get_worker_stats, 200, WorkersResponse)
    served = api.call(get_openapi_document, 200, GetOpenapiDocumentResponse200)
    check(served.to_dict() == api.doc, "the document served differs from the one generated from")

    state.update(low=low, high=high, doomed=doomed, fired=str(ran.job_id))


def phase2(api, state):
    low, high, doomed, fired = state["low"], state["high"], state["doomed"], state["fired"]

    def finished(job_id):
        j = job(api, job_id)
        check(j.status not in (JobStatus.FAILED, JobStatus.CANCELLED), f"{j}")
        return j if j.status == JobStatus.COMPLETED else None

    for job_id in (high, low, fired):
        j = wait_for(f"job {job_id} to complete", lambda: finished(job_id))
        check(isinstance(j.completed_at, datetime.datetime) and j.retry_count == 0, f"{j}")
    r = api.call(get_job_result, 200, JobResultResponse, job_id=uuid.UUID(high))
    check(r.status == JobStatus.COMPLETED and isinstance(r.completed_at, datetime.datetime),
          f"{r}")
    check(isinstance(r.result, dict) and r.result.get("user_id") == "user-002", f"{r.result}")
    check(isinstance(r.result.get("total_value"), (int, float)), f"{r.result}")
    check(r.error is None or isinstance(r.error, Unset), f"{r}")

    def dead(job_id):
        dlq = api.call(list_dead_letter_jobs, 200, JobListResponse, limit=100)
        return next((j for j in dlq.jobs if str(j.id) == job_id), None)

    d = wait_for(f"job {doomed} in the dead-letter queue", lambda: dead(doomed))
    check(d.status == JobStatus.FAILED and "unknown user" in (d.error or ""), f"{d}")
    check(d.args == {"user_id": "nobody"}, f"a dead job keeps its arguments: {d.args}")
    res = api.call(get_job_result, 200, JobResultResponse, job_id=uuid.UUID(doomed))
    check(res.status == JobStatus.FAILED and "unknown user" in (res.error or ""), f"{res}")
    again = api.call(retry_dead_letter_job, 200, RetryResponse, job_id=uuid.UUID(doomed))
    check(again.status == JobStatus.PENDING and str(again.job_id) == doomed, f"{again}")
    # It fails again, for good again: back in the dead-letter queue, one more attempt.
    d2 = wait_for(f"job {doomed} back in the dead-letter queue",
                  lambda: (lambda j: j if j and j.attempt > d.attempt else None)(dead(doomed)))
    check(d2.status == JobStatus.FAILED, f"{d2}")
    api.error(retry_dead_letter_job, 409, "invalid_state", job_id=uuid.UUID(low))

    # Workers publish their counters with each heartbeat (a third of the lease).
    def busy_workers():
        w = api.call(get_worker_stats, 200, WorkersResponse)
        check(w.total_workers == len(w.workers), f"{w}")
        done = sum(x.jobs_succeeded for x in w.workers) >= 3
        return w if done and sum(x.jobs_failed for x in w.workers) >= 2 else None

    wait_for("the workers' counters: 3 jobs succeeded, 2 failed", busy_workers)
    full = api.call(get_stats, 200, FullStatsResponse)
    check(full.queue.counters.completed >= 3 and full.queue.counters.dead >= 2, f"{full.queue}")
    check(full.queue.dead_letter >= 1, f"{full.queue}")
    buckets = api.call(get_throughput, 200, ThroughputResponse).buckets
    check(sum(b.completed for b in buckets) >= 3 and sum(b.failed for b in buckets) >= 2,
          f"throughput {buckets}")

    cleared = api.call(clear_dead_letter_queue, 200, ClearResponse)
    check(cleared.cleared >= 1, f"{cleared}")
    check(dead(doomed) is None, "the cleared job is still in the dead-letter queue")

    # (The predefined schedules may fire meanwhile: the dead-letter queue only grows now.)
    before = api.call(get_queue_stats, 200, QueueStatsView).dead_letter
    check_metrics(api, before)
    missing = sorted(set(api.ops) - api.called)
    check(not missing, f"operations no flow called: {missing}")


# The families of /metrics (docs/API.md) and their types.
METRIC_FAMILIES = {
    "jobs_enqueued": "counter", "jobs_completed": "counter", "jobs_failed": "counter",
    "jobs_retried": "counter", "jobs_dead_lettered": "counter",
    "jobs_unhandled": "counter", "jobs_leases_lost": "counter",
    "jobs_processing_seconds": "histogram", "jobs_queue_wait_seconds": "histogram",
    "jobs_queue_pending": "gauge", "jobs_queue_scheduled": "gauge",
    "jobs_queue_ready": "gauge", "jobs_queue_paused": "gauge",
    "jobs_queue_retrying": "gauge", "jobs_queue_processing": "gauge",
    "jobs_dead_letter_size": "gauge", "jobs_workers_live": "gauge",
    "jobs_backend_enqueued": "counter", "jobs_backend_completed": "counter",
    "jobs_backend_failed": "counter", "jobs_backend_retried": "counter",
    "jobs_backend_dead_lettered": "counter", "jobs_backend_cancelled": "counter",
    "jobs_backend_stalled": "counter",
    "jobs_schedules": "gauge", "jobs_schedules_due": "gauge", "jobs_scheduler_running": "gauge",
}


def check_metrics(api, dead_before):
    """/metrics (OpenMetrics text) through the official Prometheus client's OpenMetrics
    parser: every documented family with its type, and samples that agree with the API's
    own numbers."""
    text = api.call(get_metrics, 200, str)
    dead_after = api.call(get_queue_stats, 200, QueueStatsView).dead_letter
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in METRIC_FAMILIES.items():
        check(name in families, f"/metrics has no family {name}: {sorted(families)}")
        check(families[name].type == kind, f"{name} is a {families[name].type}, not a {kind}")

    def sample(name, **labels):
        for f in families.values():
            for s in f.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        raise FlowError(f"/metrics has no sample {name}{labels}")

    check(sample("jobs_enqueued_total", handler="sync_portfolio") >= 4, "enqueued")
    check(sample("jobs_backend_completed_total") >= 3, "backend completed")
    check(sample("jobs_backend_dead_lettered_total") >= 2, "backend dead-lettered")
    dead = sample("jobs_dead_letter_size")
    check(dead_before <= dead <= dead_after, f"jobs_dead_letter_size {dead}, the API says "
          f"{dead_before} before and {dead_after} after")
    check(sample("jobs_workers_live") >= 1, "live workers")
    check(sample("jobs_queue_paused", queue="default") == 0, "the default queue is not paused")
    check(sample("jobs_queue_ready", queue="default", priority="low") >= 0, "ready by queue")
    check(sample("jobs_scheduler_running") == 1, "the scheduler runs")
    print(f"/metrics: {len(families)} families parsed by prometheus_client")


def main():
    phase, base, token, doc_path, state_path = sys.argv[1:]
    with open(doc_path) as f:
        api = Api(base, token, json.load(f))
    if phase == "phase1":
        state = {}
        phase1(api, state)
        state["called"] = sorted(api.called)
        with open(state_path, "w") as f:
            json.dump(state, f)
    elif phase == "phase2":
        with open(state_path) as f:
            state = json.load(f)
        api.called = set(state["called"])
        phase2(api, state)
    else:
        sys.exit(f"unknown phase {phase!r}")
    print(f"{phase}: every response parsed into its model and fits the document")


if __name__ == "__main__":
    try:
        main()
    except FlowError as e:
        sys.exit(f"client flow failed: {e}")
