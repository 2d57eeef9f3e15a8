"""S3 (and S3-compatible servers): conditional writes and server-side appends.

A generation is the object's ETag. Writes carry ``If-None-Match: *`` (the object must
not exist) or ``If-Match: <ETag>`` (it must be the one this writer last saw); deletes
carry ``If-Match``. A failed precondition raises :class:`LockAcquisitionError`: another
writer changed the object, so this writer's lock is no longer exclusive.

Appending to a tar of at least 5 MiB (S3's smallest multipart part) is a multipart
upload: the committed bytes are copied server-side (UploadPartCopy with
``x-amz-copy-source-if-match``, in parts of at most 5 GiB), and the last part holds the
new members, so the bytes sent are those of the new members only. A smaller tar is read
back and rewritten whole with one conditional PUT.

The endpoint comes from the usual places: ``AWS_ENDPOINT_URL`` (botocore), fsspec's
``FSSPEC_S3_ENDPOINT_URL``, or ``~/.config/fsspec/*.json``.
"""

import errno
from collections.abc import Iterator
from typing import Any

from fsspec.asyn import sync  # type: ignore[import-untyped]

from dicomflow.cod.store import Generation, Store, _check_append
from dicomflow.errors import LockAcquisitionError

MIN_PART = 5 * 2**20
MAX_PART = 5 * 2**30


def copy_ranges(size: int, largest: int = MAX_PART) -> Iterator[tuple[int, int]]:
    """Split ``[0, size)`` into equal ranges no larger than ``largest`` (half-open)."""
    count = -(-size // largest)
    step = -(-size // count)
    for start in range(0, size, step):
        yield start, min(start + step, size)


def _match(expected: Generation) -> dict[str, str]:
    return {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}


CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})


def _error_code(exc: BaseException) -> str:
    """The S3 error code behind an exception translated by s3fs ("" if none)."""
    response = getattr(exc.__cause__, "response", None) or getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _precondition_failed(exc: OSError) -> bool:
    """True for a failed ``If-Match``/``If-None-Match`` (or a concurrent conditional write)."""
    if _error_code(exc) in CONFLICT_CODES or isinstance(exc, FileExistsError):
        return True
    return exc.errno == errno.EINVAL and "pre-condition" in str(exc)


def _raise_conflict(path: str, expected: Generation, exc: OSError) -> None:
    """Raise LockAcquisitionError if ``exc`` is a failed precondition."""
    if not _precondition_failed(exc):
        return
    wanted = "no object" if expected is None else f"ETag {expected}"
    raise LockAcquisitionError(
        f'"{path}" was changed by another writer (expected {wanted}); this writer\'s lock '
        "is no longer exclusive, so it writes nothing."
    ) from exc


class S3Store(Store):
    """An S3 bucket through s3fs, with conditional writes."""

    conditional = True

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """One S3 API call (every request but the GETs of ``read`` goes through here)."""
        result: dict[str, Any] = self.fs.call_s3(method, **kwargs)
        return result

    def _where(self, path: str) -> dict[str, str]:
        bucket, key, _ = self.fs.split_path(path)
        return {"Bucket": bucket, "Key": key}

    def read(self, path: str) -> tuple[bytes, Generation]:
        data, etag = sync(self.fs.loop, self._get, self._where(path))
        return data, etag

    async def _get(self, where: dict[str, str], **kwargs: Any) -> tuple[bytes, str]:
        response = await self.fs._call_s3("get_object", **where, **kwargs)
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data, str(response["ETag"])

    def generation(self, path: str) -> Generation:
        try:
            return str(self._call("head_object", **self._where(path))["ETag"])
        except FileNotFoundError:
            return None

    def create(self, path: str, data: bytes) -> Generation:
        try:
            response = self._call("put_object", **self._where(path), Body=data, IfNoneMatch="*")
        except OSError as exc:
            if _precondition_failed(exc):  # 412, or 409 for a concurrent conditional write
                raise FileExistsError(f'"{path}" already exists.') from exc
            raise
        finally:
            self.fs.invalidate_cache(path)
        return str(response["ETag"])

    def replace(self, path: str, data: bytes, expected: Generation) -> Generation:
        try:
            response = self._call("put_object", **self._where(path), Body=data, **_match(expected))
        except OSError as exc:
            _raise_conflict(path, expected, exc)
            raise
        finally:
            self.fs.invalidate_cache(path)
        return str(response["ETag"])

    def delete(self, path: str, expected: Generation) -> None:
        match = {} if expected is None else {"IfMatch": expected}
        try:
            self._call("delete_object", **self._where(path), **match)
        except OSError as exc:
            _raise_conflict(path, expected, exc)
            raise
        finally:
            self.fs.invalidate_cache(path)

    def append(
        self, path: str, offset: int, parts: list[bytes], expected: Generation
    ) -> Generation:
        _check_append(path, offset, expected)
        new = b"".join(parts)
        if offset == 0:
            return self.replace(path, new, expected)
        if offset < MIN_PART:
            kept = self._read_kept(path, offset, expected)
            return self.replace(path, kept + new, expected)
        try:
            return self._multipart(path, offset, new, str(expected))
        except OSError as exc:
            _raise_conflict(path, expected, exc)
            raise
        finally:
            self.fs.invalidate_cache(path)

    def _read_kept(self, path: str, offset: int, expected: Generation) -> bytes:
        where, match = self._where(path), {"IfMatch": str(expected)}
        try:
            data, _ = sync(self.fs.loop, self._get, where, Range=f"bytes=0-{offset - 1}", **match)
        except OSError as exc:
            _raise_conflict(path, expected, exc)
            raise
        kept: bytes = data
        return kept

    def _multipart(self, path: str, offset: int, new: bytes, expected: str) -> Generation:
        where = self._where(path)
        upload = self._call("create_multipart_upload", **where)["UploadId"]
        try:
            parts = self._copy_parts(where, upload, offset, expected)
            number = len(parts) + 1
            out = self._call("upload_part", **where, UploadId=upload, PartNumber=number, Body=new)
            parts.append({"PartNumber": number, "ETag": out["ETag"]})
            done = self._call(
                "complete_multipart_upload",
                **where,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                IfMatch=expected,
            )
        except BaseException:
            self._call("abort_multipart_upload", **where, UploadId=upload)
            raise
        return str(done["ETag"])

    def _copy_parts(
        self, where: dict[str, str], upload: str, offset: int, expected: str
    ) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for number, (start, end) in enumerate(copy_ranges(offset), start=1):
            out = self._call(
                "upload_part_copy",
                **where,
                UploadId=upload,
                PartNumber=number,
                CopySource=f"{where['Bucket']}/{where['Key']}",
                CopySourceRange=f"bytes={start}-{end - 1}",
                CopySourceIfMatch=expected,
            )
            parts.append({"PartNumber": number, "ETag": out["CopyPartResult"]["ETag"]})
        return parts
