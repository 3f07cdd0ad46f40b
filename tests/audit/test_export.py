"""Export to a real S3-compatible server (moto server mode) and offline verification."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import orjson
import psycopg
import pytest

from haltgate.governance.audit.export import export, verify_export
from haltgate.governance.audit.record import Chainer
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import BASE_TIME, haltgate_cli, insert_lines, make_record

SINCE = datetime.fromtimestamp(BASE_TIME - 1, UTC)
UNTIL = datetime.fromtimestamp(BASE_TIME + 3600, UTC)


@pytest.fixture
def bucket(s3_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    name = f"audit-{abs(hash(request.node.name)) % 10**8}"
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"])
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def shipped(audit_db: AuditDatabase) -> Iterator[AuditDatabase]:
    """Three chains, 40 + 25 + 10 records, plus 5 records after the export window."""
    chainer = Chainer()
    lines = [chainer.seal(make_record(i, time=BASE_TIME + i))[1] for i in range(40)]
    lines += [chainer.seal(make_record(i, run="run-2", time=BASE_TIME + i))[1] for i in range(25)]
    lines += [
        chainer.seal(make_record(i, run="run-3", time=BASE_TIME + 2 * i))[1] for i in range(10)
    ]
    lines += [
        chainer.seal(make_record(i, run="run-3", time=BASE_TIME + 7200 + i))[1] for i in range(5)
    ]
    with psycopg.connect(audit_db.writer) as conn:
        insert_lines(conn, lines)
    yield audit_db


def s3(env: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])


def test_cli_export_then_verify_offline(
    shipped: AuditDatabase, bucket: str, s3_env: dict[str, str]
) -> None:
    url = f"s3://{bucket}/team-a/2026-09"
    done = haltgate_cli(
        "audit",
        "export",
        "--dsn",
        shipped.reader,
        "--to",
        url,
        "--since",
        SINCE.isoformat(),
        "--until",
        UNTIL.isoformat(),
        "--records-per-object",
        "20",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "75 records, 4 objects, 3 chains" in done.stdout
    manifest = orjson.loads(
        s3(s3_env).get_object(Bucket=bucket, Key="team-a/2026-09/manifest.json")["Body"].read()
    )
    assert manifest["chains"]["team-a/agent-0/run-3"]["last_seq"] == 10
    ok = haltgate_cli("audit", "verify", "--export", url, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 3 chains, 75 records" in ok.stdout


def _rewrite(env: dict[str, str], bucket: str, key: str, edit: Any) -> bytes:
    client = s3(env)
    lines = gzip.decompress(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data = gzip.compress(edit(lines.splitlines(keepends=True)))
    client.put_object(Bucket=bucket, Key=key, Body=data)
    return data


def test_tampered_object_is_found(
    shipped: AuditDatabase, bucket: str, s3_env: dict[str, str]
) -> None:
    url = f"s3://{bucket}/x"
    export(shipped.reader, url, since=SINCE, until=UNTIL, records_per_object=30)
    _rewrite(s3_env, bucket, "x/records-000001.jsonl.gz", lambda ls: b"".join(ls[:5] + ls[6:]))
    kinds = {p.kind for p in verify_export(url).problems}
    assert {"object_digest_mismatch", "object_count_mismatch", "seq_gap"} <= kinds


def test_tail_truncation_with_a_consistent_object_is_found(
    shipped: AuditDatabase, bucket: str, s3_env: dict[str, str]
) -> None:
    url = f"s3://{bucket}/y"
    result = export(shipped.reader, url, since=SINCE, until=UNTIL, records_per_object=1000)
    # Drop run-3's last record and fix the object digest and counts in the manifest: only
    # the chain head in the manifest still tells.
    data = _rewrite(s3_env, bucket, "y/records-000001.jsonl.gz", lambda ls: b"".join(ls[:-1]))
    manifest = result.manifest
    manifest["objects"][0].update(
        sha256=hashlib.sha256(data).hexdigest(), records=74, bytes=len(data)
    )
    manifest["records"] = 74
    s3(s3_env).put_object(Bucket=bucket, Key="y/manifest.json", Body=orjson.dumps(manifest))
    problems = verify_export(url).problems
    assert [(p.kind, p.chain_id, p.seq) for p in problems] == [
        ("head_mismatch", "team-a/agent-0/run-3", 9)
    ]


class _FailingClient:
    """A boto3 client that dies on the n-th put_object (an exporter killed mid-way)."""

    def __init__(self, real: Any, fail_at: int) -> None:
        self._real, self._left = real, fail_at
        self.exceptions = real.exceptions

    def put_object(self, **kwargs: Any) -> Any:
        self._left -= 1
        if self._left == 0:
            raise ConnectionError("simulated crash")
        return self._real.put_object(**kwargs)

    def get_object(self, **kwargs: Any) -> Any:
        return self._real.get_object(**kwargs)


def test_interrupted_export_resumes(
    shipped: AuditDatabase, bucket: str, s3_env: dict[str, str]
) -> None:
    url = f"s3://{bucket}/z"
    with pytest.raises(ConnectionError):
        export(
            shipped.reader,
            url,
            since=SINCE,
            until=UNTIL,
            records_per_object=10,
            client=_FailingClient(s3(s3_env), fail_at=5),
        )  # after 2 objects + progress
    result = export(shipped.reader, url, since=SINCE, until=UNTIL, records_per_object=10)
    assert result.resumed and result.objects_written == 6
    assert result.manifest["records"] == 75 and len(result.manifest["objects"]) == 8
    assert verify_export(url).ok
    again = export(shipped.reader, url, since=SINCE, until=UNTIL)
    assert again.already_complete


def test_export_to_a_local_directory_verifies(shipped: AuditDatabase, tmp_path: Path) -> None:
    export(shipped.reader, str(tmp_path), since=SINCE, until=UNTIL)
    report = verify_export(str(tmp_path))
    assert report.ok and report.records == 75
