"""``GET /api/v1/stats/readings`` (and ``/csv``) over real uvicorn and the real store:
the statistics of the store test's day of readings as JSON and CSV, the refusals with
their codes, and the OpenAPI document."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app, openapi_gaps
from api.auth import AccountApi, account_api
from api.consults import ConsultApi, consult_api
from api.edge import Edge, EdgeConfig
from api.reading_stats import ReadingStatsApi, reading_stats_api
from store.reading_stats import SqlReadingStatistics
from tests.api.test_consults import error_of
from tests.api.test_readings import Api
from tests.consults.test_reading_service_world import make_reading_world
from tests.pg import Database, database
from tests.store.test_reading_stats import SIGN_AFTER_S, _day

__all__ = ["database"]


@pytest.fixture
async def api(database: Database) -> AsyncIterator[Api]:
    """The account, consult and reading-statistics APIs over the reading world's store."""
    rw = make_reading_world(database)
    parts: list[AccountApi | ConsultApi | ReadingStatsApi] = [
        account_api(rw.world.accounts, rw.world.directory),
        consult_api(rw.world.service),
        reading_stats_api(SqlReadingStatistics(rw.world.stores.engine)),
    ]
    app = create_app(
        route_handlers=[h for p in parts for h in p.route_handlers],
        dependencies={k: v for p in parts for k, v in p.dependencies.items()},
        middleware=[m for p in parts for m in p.middleware],
    )
    edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
    await edge.start()
    try:
        yield Api(edge.url, rw)
    finally:
        await edge.close()
        rw.world.stores.close()


async def test_statistics_as_json_and_csv(api: Api) -> None:
    start, _ = _day(api.rw)
    since = start.isoformat().replace("+00:00", "Z")
    client = await api.client("zhao.coord")
    try:
        answer = await client.get(f"/api/v1/stats/readings?by=reader&since={since}")
        assert answer.status_code == 200, answer.text
        groups = {g["key"]: g for g in answer.json()["groups"]}
        assert sorted(groups) == ["", "liu.reader", "ma.reader"]
        assert groups["ma.reader"]["sign_median_s"] == SIGN_AFTER_S["s2"]
        assert groups["ma.reader"]["escalated"] == 1
        csv_answer = await client.get(f"/api/v1/stats/readings/csv?by=clinic&since={since}")
        assert csv_answer.status_code == 200
        assert csv_answer.headers["cache-control"] == "no-store"
        text = csv_answer.content.decode("utf-8-sig")
        [row] = list(csv.DictReader(io.StringIO(text)))
        assert (row["key"], row["received"], row["criticals"]) == ("village-1", "5", "2")
    finally:
        await client.aclose()


async def test_refusals(api: Api) -> None:
    doctor = await api.client("li.doctor")
    refused = await doctor.get("/api/v1/stats/readings")
    await doctor.aclose()
    assert error_of(refused) == (403, "forbidden")
    coordinator = await api.client("zhao.coord")
    try:
        too_long = await coordinator.get(
            "/api/v1/stats/readings?since=2025-01-01T00:00:00Z&until=2026-12-01T00:00:00Z"
        )
        assert error_of(too_long) == (400, "invalid_input")
        unknown = await coordinator.get("/api/v1/stats/readings?by=patient")
        assert unknown.status_code == 400
    finally:
        await coordinator.aclose()
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        assert (await anonymous.get("/api/v1/stats/readings")).status_code == 401


async def test_the_openapi_document_says_everything(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    assert {"/api/v1/stats/readings", "/api/v1/stats/readings/csv"} <= set(document["paths"])
    assert [g for g in openapi_gaps(document) if "/stats/readings" in g] == []
