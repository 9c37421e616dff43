"""Object-storage plumbing of the landing operators: the storage connection, early checks, object writes.

Three things every operator that writes files needs, kept out of the operators themselves:

* :func:`output_root` — the landing root as an ``ObjectStoragePath`` bound to the Airflow connection of
  the object store (``output_conn_id``, e.g. an ``aws`` connection for ``s3://…``). ``str()`` of the path
  and of every path below it carries the connection as ``s3://<conn_id>@bucket/key``, so manifests, XCom
  and the SQL loader reach the files through the same connection.
* :func:`check_output_folder` — before any Cloud Elements job is submitted: the bucket exists (it is
  never created), the credentials reach it, and the folder is writable (a hidden probe object is
  written and removed). Raises :class:`~airflow_provider_cloudelements.exceptions.CloudElementsConfigError`
  naming the URI and the connection id (never a secret).
* :func:`staged_object` — writing one object on an object store. The object is uploaded straight to
  its final key: S3 (single PUT or completed multipart upload) and GCS make an object visible only once
  it is complete, so there is no temporary object to copy and delete afterwards (a copy would double the
  transfer and, for a replace, leave the key missing in between). An upload that is not published —
  the block raised or returned without ``publish()`` — is aborted (``discard``), so nothing is visible
  at the key. Local folders keep the temporary sibling plus ``os.replace`` of
  :func:`airflow_provider_cloudelements.utils.landing.staged_file`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from airflow.sdk import ObjectStoragePath

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError

log = logging.getLogger(__name__)

#: ``ObjectStoragePath.protocol`` values of the local filesystem.
LOCAL_PROTOCOLS = frozenset({"file", "local", ""})

__all__ = ["LOCAL_PROTOCOLS", "check_output_folder", "is_anonymous", "is_local", "output_root", "staged_object"]


def is_local(path: ObjectStoragePath) -> bool:
    """Whether ``path`` is on the local filesystem (``file://`` or a plain path)."""
    return path.protocol in LOCAL_PROTOCOLS


def output_root(base: str | ObjectStoragePath, conn_id: str | None = None) -> ObjectStoragePath:
    """The landing root ``base`` bound to the object store's Airflow connection ``conn_id``.

    :param base: landing root URI (``s3://bucket/prefix``, ``gs://…``, ``file:///…`` or a local path);
        ``s3://<conn_id>@bucket/prefix`` names the connection inside the URI.
    :param conn_id: Airflow connection of the object store (``output_conn_id`` of the operators);
        ``None`` = the one in the URI, else the filesystem's default credentials.
    :raises CloudElementsConfigError: empty ``base``; a ``conn_id`` for a local path; a ``conn_id``
        that contradicts the one in the URI.
    """
    if isinstance(base, ObjectStoragePath):
        root = base
    elif isinstance(base, str) and base.strip():
        root = ObjectStoragePath(base.strip())
    else:
        raise CloudElementsConfigError(f"output_base must be a non-empty URI or path, got {base!r}")
    if conn_id in (None, ""):
        return root
    if not isinstance(conn_id, str):
        raise CloudElementsConfigError(f"output_conn_id must be a connection id string, got {type(conn_id).__name__}")
    if is_local(root):
        raise CloudElementsConfigError(
            f"output_conn_id={conn_id!r} is for object stores (s3://, gs://…); output_base {root} is local"
        )
    if root.conn_id and root.conn_id != conn_id:
        raise CloudElementsConfigError(
            f"output_conn_id={conn_id!r} contradicts the connection {root.conn_id!r} named in output_base"
        )
    return ObjectStoragePath(f"{root.protocol}://{root.path}", conn_id=conn_id)


def is_anonymous(fs: Any) -> bool:
    """Whether an fsspec filesystem sends unsigned (anonymous) requests.

    s3fs: ``anon=True`` (what ``airflow.providers.amazon.aws.fs.s3.get_fs`` picks when boto finds no
    credentials); gcsfs: the ``anon`` credentials method (what ``GCSFileSystem()`` falls back to without
    credentials) or google-auth's ``AnonymousCredentials`` (a Google connection with ``is_anonymous``).
    """
    if getattr(fs, "anon", False) is True:
        return True
    credentials = getattr(fs, "credentials", None)  # gcsfs.credentials.GoogleCredentials
    if getattr(credentials, "method", None) == "anon":
        return True
    # a google-auth AnonymousCredentials passed as the token (the Google connection's ``is_anonymous``)
    return type(getattr(credentials, "credentials", None)).__name__ == "AnonymousCredentials"


#: The provider distribution that registers each common object-store scheme with Airflow.
SCHEME_PROVIDERS = {
    "s3": "apache-airflow-providers-amazon[s3fs]",
    "s3a": "apache-airflow-providers-amazon[s3fs]",
    "gs": "apache-airflow-providers-google",
    "gcs": "apache-airflow-providers-google",
    "abfs": "apache-airflow-providers-microsoft-azure",
    "az": "apache-airflow-providers-microsoft-azure",
    "adl": "apache-airflow-providers-microsoft-azure",
}


def _filesystem(folder: ObjectStoragePath) -> Any:
    """``folder.fs``, building the filesystem from its connection, as a typed error when that fails.

    A scheme no installed provider registers names the provider to install; a filesystem that cannot
    be built (the Google provider raises ``DefaultCredentialsError`` when neither the connection nor the
    environment has credentials) names the connection and the error type, never its text (it may quote
    a key file).
    """
    try:
        return folder.fs
    except ValueError as err:
        if "No filesystem registered" not in str(err):
            raise _unusable(folder, err) from None
        wanted = SCHEME_PROVIDERS.get(folder.protocol, "the Airflow provider that registers it")
        raise CloudElementsConfigError(
            f"output_base: no filesystem is registered for {folder.protocol}:// ({_where(folder)}); install {wanted}"
        ) from None
    except Exception as err:  # provider/auth libraries' errors have no common base class
        raise _unusable(folder, err) from None


def _unusable(folder: ObjectStoragePath, err: BaseException) -> CloudElementsConfigError:
    return CloudElementsConfigError(
        f"output_base: cannot build the {folder.protocol}:// filesystem for {_where(folder)}: "
        f"{type(err).__name__} (missing or invalid credentials on the connection or in the environment?)"
    )


def _where(path: ObjectStoragePath) -> str:
    conn = f" (connection {path.conn_id!r})" if path.conn_id else " (no output_conn_id: default credentials)"
    return f"{path.protocol}://{path.path}{conn}"


def check_output_folder(folder: ObjectStoragePath) -> None:
    """Fail before any job is submitted when ``folder`` cannot be written.

    Object stores: the bucket must exist (``info`` of the bucket; it is never created) and a hidden probe
    object (``.cloudelements-write-check.<uuid>.part``, the temporary-file pattern the partition
    cleanup leaves alone) is written to ``folder`` and removed. Local paths: the folder is created and
    probed the same way. Cost on S3: one HEAD, one PUT, one DELETE.

    A filesystem that fell back to anonymous access is refused before any request: the Amazon provider
    does that silently when neither the connection nor the environment has credentials, and an anonymous
    landing either fails later on the first private-bucket write or, worse, writes where anyone can.

    :raises CloudElementsConfigError: no credentials (anonymous access), the bucket is missing, the
        credentials are refused, or the folder is not writable; the message names the URI and the
        connection id.
    """
    if not is_local(folder):
        fs = _filesystem(folder)
        if is_anonymous(fs):
            raise CloudElementsConfigError(
                f"output_base: no credentials for {_where(folder)}: the filesystem fell back to anonymous "
                "access, which is refused for landing; set the credentials on the connection (or in the "
                "environment's default chain)"
            )
        bucket = folder.path.split("/", 1)[0]
        try:
            fs.info(bucket)
        except FileNotFoundError:
            raise CloudElementsConfigError(
                f"output_base: bucket {bucket!r} does not exist at {_where(folder)}; it is not created"
            ) from None
        except Exception as err:  # boto/gcs credential and permission errors have no common base class
            raise CloudElementsConfigError(
                f"output_base: cannot access bucket {bucket!r} at {_where(folder)}: {type(err).__name__}"
            ) from None
    probe = folder / f".cloudelements-write-check.{uuid.uuid4().hex}.part"
    try:
        if is_local(folder):
            folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except Exception as err:  # OSError locally; ClientError/NoCredentialsError/PermissionError remotely
        raise CloudElementsConfigError(f"output_base: {_where(folder)} is not writable: {type(err).__name__}") from None


@contextmanager
def staged_object(final: ObjectStoragePath, mode: str = "wb") -> Iterator[tuple[BinaryIO, Callable[[], None]]]:
    """Yield ``(handle, publish)`` writing the object ``final`` directly (object stores only).

    ``publish()`` completes the upload (the object appears whole); leaving the block without it, or by an
    exception, aborts the upload, so nothing appears at ``final`` and an object already there is left as
    it was. Never creates a bucket or "folder" marker.
    """
    handle = cast(BinaryIO, final.open(mode))
    published = False

    def publish() -> None:
        nonlocal published
        handle.close()
        published = True

    try:
        yield handle, publish
    finally:
        if not published:
            _abort(handle, final)


def _abort(handle: Any, final: ObjectStoragePath) -> None:
    """Abort an unpublished upload.

    The upload is ``discard``-ed and marked closed, so neither ``close()`` nor the file's finalizer commits
    it (fsspec's buffered files commit on close).
    """
    raw = getattr(handle, "_obj", handle)  # ObjectStoragePath.open wraps the fsspec file
    try:
        discard = getattr(raw, "discard", None)
        if callable(discard):
            discard()
            raw.closed = True
            return
        handle.close()  # a file without discard: it was committed on close, remove it
        if final.exists():
            final.unlink()
    except Exception:  # best effort: never mask the original error
        log.warning("Could not abort the upload of %s", final)
