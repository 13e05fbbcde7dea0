"""Upload a period's products to S3-compatible storage (Backblaze B2, AWS, MinIO, ...).

Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
or any other source boto3 reads) and are never written anywhere. An object that
already holds the same bytes (same SHA-256, stored in its metadata) is skipped;
every upload is verified afterwards by size, ETag and checksum.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from pathlib import Path

from s2basemap.atomic import atomic_write_json

log = logging.getLogger(__name__)

CHUNK = 64 * 1024 * 1024  # multipart threshold and part size; the ETag depends on it


class UploadError(RuntimeError):
    """An object did not arrive intact."""


def digests(path: Path) -> tuple[str, str]:
    """(sha256, the S3 ETag of an upload in CHUNK-sized parts)."""
    sha = hashlib.sha256()
    parts = []
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            sha.update(block)
            parts.append(hashlib.md5(block).digest())
    if path.stat().st_size >= CHUNK:  # boto3 goes multipart from the threshold on
        etag = f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"
    else:
        etag = parts[0].hex() if parts else hashlib.md5(b"").hexdigest()
    return sha.hexdigest(), etag


def client(settings: dict):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.get("endpoint_url"),
        region_name=settings.get("region"),
        config=Config(retries={"max_attempts": 8, "mode": "standard"}),
    )


def object_key(prefix: str, period: str, path: Path) -> str:
    parts = (part.strip("/") for part in (prefix, period, path.name))
    return "/".join(part for part in parts if part)


def destination(settings: dict, period: str) -> str:
    """The s3:// URL a period's products go to."""
    return f"s3://{settings['bucket']}/{object_key(settings.get('prefix', ''), period, Path(''))}/"


def upload_period(files: list[str], period: str, settings: dict, receipt_path, s3=None) -> None:
    """Upload (or skip) each file; write the period's receipt, one entry per file."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    s3 = s3 or client(settings)
    bucket = settings["bucket"]
    transfer = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK)
    receipts = []
    for name in files:
        path = Path(name)
        key = object_key(settings.get("prefix", ""), period, path)
        sha, etag = digests(path)
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
            head = None
        if head is not None and head.get("Metadata", {}).get("sha256") == sha:
            log.info("s3://%s/%s already holds these bytes: skipped", bucket, key)
            receipts.append(
                {"key": key, "sha256": sha, "bytes": path.stat().st_size, "action": "skipped"}
            )
            continue
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        s3.upload_file(
            str(path),
            bucket,
            key,
            Config=transfer,
            ExtraArgs={"Metadata": {"sha256": sha}, "ContentType": content_type},
        )
        verify(s3, bucket, key, path, sha, etag)
        log.info(
            "uploaded %s to s3://%s/%s (%d bytes, verified)",
            path.name,
            bucket,
            key,
            path.stat().st_size,
        )
        receipts.append(
            {"key": key, "sha256": sha, "bytes": path.stat().st_size, "action": "uploaded"}
        )
    atomic_write_json(receipt_path, {"period": period, "objects": receipts})


def verify(s3, bucket: str, key: str, path: Path, sha: str, etag: str) -> None:
    head = s3.head_object(Bucket=bucket, Key=key)
    problems = []
    if head["ContentLength"] != path.stat().st_size:
        problems.append(f"size {head['ContentLength']} != {path.stat().st_size}")
    if head["ETag"].strip('"') != etag:
        problems.append(f"ETag {head['ETag']} != {etag}")
    if head.get("Metadata", {}).get("sha256") != sha:
        problems.append("sha256 metadata missing or different")
    if problems:
        raise UploadError(f"s3://{bucket}/{key} does not match {path}: {'; '.join(problems)}")
