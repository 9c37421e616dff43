"""Paged listings and bulk-download record counting, without I/O (reference §1.3, §3.3).

:class:`Pager` is the pagination state machine both hooks drive (the sync hook in a ``while`` loop,
the async hook with ``await`` between pages); :class:`RecordCounter` counts the records of a streamed
bulk download. Part of the client core: no Airflow import.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_cloudelements.client.protocol import (
    H_ERROR,
    H_NEXT_PAGE,
    H_REQUEST_ID,
    H_RETURNED_COUNT,
    H_TOTAL_COUNT,
    excerpt,
    header_int,
)
from airflow_provider_cloudelements.exceptions import CloudElementsApiError, CloudElementsReconciliationError

#: Largest CSV field the record counter accepts (the :mod:`csv` default of 128 KiB is raised to this).
CSV_FIELD_LIMIT = 64 * 1024 * 1024


# --------------------------------------------------------------------------------------------- pagination
@dataclass
class PageInfo:
    """One page of a paged list response (reference §1.3, §3.3).

    :param records: the decoded JSON array.
    :param next_token: ``Elements-Next-Page-Token`` (``None`` when absent/empty).
    :param returned: ``Elements-Returned-Count`` or ``None``.
    :param total: ``Elements-Total-Count`` or ``None``.
    :param error_header: ``Elements-Error`` or ``None``.
    :param request_id: ``Elements-Request-Id`` or ``None``.
    """

    records: list[Any]
    next_token: str | None = None
    returned: int | None = None
    total: int | None = None
    error_header: str | None = None
    request_id: str | None = None

    @classmethod
    def from_response(cls, body: Any, headers: Mapping[str, str]) -> PageInfo:
        """Build from a decoded body and response headers (requests or httpx, case-insensitive).

        :raises CloudElementsApiError: when the body is not a JSON array.
        """
        if body is None:
            body = []
        if not isinstance(body, list):
            raise CloudElementsApiError(
                f"Expected a JSON array in a paged list response, got {type(body).__name__}",
                request_id=headers.get(H_REQUEST_ID),
            )
        return cls(
            records=body,
            next_token=(headers.get(H_NEXT_PAGE) or "").strip() or None,
            returned=header_int(headers, H_RETURNED_COUNT),
            total=header_int(headers, H_TOTAL_COUNT),
            error_header=headers.get(H_ERROR),
            request_id=headers.get(H_REQUEST_ID),
        )


def record_key(record: Any) -> str:
    """Identity of a record for the pagination loop guard: ``id``/``ListID``/``TxnID``, else its JSON."""
    if isinstance(record, Mapping):
        for name in ("id", "ListID", "TxnID", "Id"):
            value = record.get(name)
            if value not in (None, ""):
                return f"{name}={value}"
    return "json=" + hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


class Pager:
    """The pagination state machine shared by the sync and async hooks (reference §3.3), without I/O.

    Usage: ``while (params := pager.next_params()) is not None: records = pager.feed(fetch(params))``,
    then ``pager.finish()``.

    Rules: send ``pageSize``; follow ``Elements-Next-Page-Token`` (as ``nextPage``) while present and
    ``Elements-Returned-Count`` (else the record count) > 0; a page without a token is the last one when
    the listing is ``cursor_only`` (QuickBooks Enterprise hub resources, event listings, bulk errors:
    they ignore or reject ``page``), or when the page came back short; otherwise (page-numbered
    listings) ask ``page=n+1`` after a full page. An ``Elements-Error`` header with a short non-empty
    page means the server capped ``pageSize``: continue with the size that came back (warning logged).
    A page starting with the same record as the PREVIOUS page means the server ignored ``page`` and
    sent page 1 again: that is the end of the list (its records are not yielded twice; warning
    logged). A page starting with a record of an older page, or a repeated cursor, raises
    :class:`CloudElementsApiError` instead of looping. ``reconcile_total`` sends ``returnCount=true``
    and :meth:`finish` compares counts.

    :param path: request path (for messages).
    :param params: fixed query parameters (``where``, ``orderBy`` …).
    :param page_size: initial ``pageSize`` (> 0).
    :param reconcile_total: compare the yielded count with ``Elements-Total-Count``.
    :param logger: where warnings go.
    :param cursor_only: the listing pages by cursor only (never send ``page``).
    """

    def __init__(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        page_size: int,
        reconcile_total: bool = False,
        logger: Any = None,
        cursor_only: bool = False,
    ) -> None:
        self.path = path
        self.cursor_only = cursor_only
        self.params = dict(params)
        self.size = page_size
        self.reconcile_total = reconcile_total
        self.log = logger or logging.getLogger(__name__)
        self.page_no = 1
        self.token: str | None = None
        self.cursor_mode = False
        self.yielded = 0
        self.total: int | None = None
        self.done = False
        self._first_keys: dict[str, int] = {}
        self._tokens: set[str] = set()
        self._warned = False

    def next_params(self) -> dict[str, Any] | None:
        """Query parameters of the next request, or ``None`` when the list is exhausted."""
        if self.done:
            return None
        query: dict[str, Any] = {**self.params, "pageSize": self.size}
        if self.reconcile_total:
            query["returnCount"] = "true"
        if self.token is not None:
            query["nextPage"] = self.token
        elif self.page_no > 1:
            query["page"] = self.page_no
        return query

    def feed(self, page: PageInfo) -> list[Any]:
        """Account for one page; return its records; decide the next request.

        :raises CloudElementsApiError: a page repeating the first record of an older page, or a repeated
            cursor.
        """
        n = len(page.records)
        if n and self.page_no > 1 and self._first_keys.get(record_key(page.records[0])) == self.page_no - 1:
            self.done = True
            self.log.warning(
                "GET %s: page %s starts with the same record as page %s (the server ignores page); "
                "treating it as the end of the list",
                self.path,
                self.page_no,
                self.page_no - 1,
            )
            return []
        if page.total is not None:
            self.total = page.total
        if page.error_header:
            if 0 < n < self.size:
                self.log.warning(
                    "GET %s returned %s of the %s requested records with Elements-Error: %s; assuming the "
                    "server capped pageSize, continuing with pageSize=%s",
                    self.path,
                    n,
                    self.size,
                    excerpt(page.error_header),
                    n,
                )
                self.size = n
            elif not self._warned:
                self.log.warning("Cloud Elements warning on GET %s: %s", self.path, excerpt(page.error_header))
            self._warned = True
        if n:
            key = record_key(page.records[0])
            if key in self._first_keys:
                self.done = True
                raise CloudElementsApiError(
                    f"GET {self.path}: page {self.page_no} starts with the same record as page "
                    f"{self._first_keys[key]} ({key}); the server ignores paging, refusing to loop",
                    request_id=page.request_id,
                )
            self._first_keys[key] = self.page_no
        self.yielded += n
        returned = page.returned if page.returned is not None else n
        if page.next_token and returned > 0:
            if page.next_token in self._tokens:
                self.done = True
                raise CloudElementsApiError(
                    f"GET {self.path}: the server returned the same Elements-Next-Page-Token twice; refusing to loop",
                    request_id=page.request_id,
                )
            self._tokens.add(page.next_token)
            self.token = page.next_token
            self.cursor_mode = True
            self.page_no += 1
        elif self.cursor_mode or self.cursor_only or n == 0 or n < self.size:
            self.done = True
        else:
            self.page_no += 1  # no cursor and a full page: fall back to page numbers
        return page.records

    def finish(self) -> None:
        """Reconcile after the last page.

        :raises CloudElementsReconciliationError: ``reconcile_total`` and the counts differ.
        """
        if self.reconcile_total:
            if self.total is None:
                self.log.warning(
                    "GET %s: reconcile_total requested but the server sent no Elements-Total-Count", self.path
                )
            elif self.total != self.yielded:
                raise CloudElementsReconciliationError(
                    f"GET {self.path}: yielded {self.yielded} records but Elements-Total-Count says {self.total}"
                )
        self.log.info("GET %s: %s records in %s page(s)", self.path, self.yielded, self.page_no)


# --------------------------------------------------------------------------------------------- record counting
class RecordCounter:
    """Counts the records of a bulk download while its chunks stream by (no I/O, constant memory).

    NDJSON (``fmt="json"``): every line holding a non-whitespace byte is one record; blank lines are not
    records. CSV (``fmt="csv"``): records as the :mod:`csv` module parses them (a line break inside a
    quoted field stays inside its record), the header row and blank lines excluded. ``lines`` counts
    newline-terminated lines plus a final unterminated one (``BulkDownloadResult.lines`` as before).

    Usage: ``counter.consume(chunks)``; the chunks are pulled one by one (the caller's iterator may write
    each to a file before yielding it), so reading stops at the first chunk that brings more records
    than ``expected``.

    :param fmt: ``"json"`` or ``"csv"``.
    :param expected: the record count Cloud Elements reported (``None``: no limit).
    :param what: the download, for the message.
    :raises CloudElementsReconciliationError: from :meth:`consume`: more records than ``expected``, or a
        CSV the :mod:`csv` module cannot parse (e.g. a NUL byte).
    """

    def __init__(self, fmt: str, *, expected: int | None = None, what: str = "bulk download") -> None:
        self.fmt = fmt
        self.expected = expected
        self.what = what
        self.records = 0
        self.lines = 0
        self.bytes = 0
        self._partial = False  # bytes after the last newline exist
        self._pending = False  # ... and hold a non-whitespace byte (NDJSON)

    def consume(self, chunks: Iterable[bytes]) -> None:
        """Pull and count every chunk.

        :raises CloudElementsReconciliationError: as soon as more records than ``expected`` arrived.
        """
        if self.fmt == "csv":
            if csv.field_size_limit() < CSV_FIELD_LIMIT:  # default 128 KiB: a long memo would raise
                csv.field_size_limit(CSV_FIELD_LIMIT)
            rows = 0
            try:
                for row in csv.reader(self._text_lines(chunks)):
                    if row:
                        rows += 1
                        self.records = rows - 1  # the first row is the header
                        self._check()
            except csv.Error as err:
                raise CloudElementsReconciliationError(
                    f"{self.what}: the CSV cannot be parsed to count its records after {self.bytes} bytes: {err}"
                ) from None
        else:
            for chunk in chunks:
                if chunk:
                    self._account(chunk)
                    self._count_ndjson(chunk)
                    self._check()
            if self._pending:
                self.records += 1
                self._pending = False
                self._check()
        if self._partial:
            self.lines += 1

    def _account(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        newlines = chunk.count(b"\n")
        self.lines += newlines
        if newlines:
            self._partial = not chunk.endswith(b"\n")
        elif chunk:
            self._partial = True

    def _count_ndjson(self, chunk: bytes) -> None:
        if b"\n" not in chunk:
            self._pending = self._pending or not chunk.isspace()
            return
        parts = chunk.split(b"\n")
        first, last = parts[0], parts[-1]
        if self._pending or (first and not first.isspace()):
            self.records += 1
        self.records += sum(1 for line in parts[1:-1] if line and not line.isspace())
        self._pending = bool(last) and not last.isspace()

    def _text_lines(self, chunks: Iterable[bytes]) -> Iterator[str]:
        """Decoded lines (``\\n`` kept) for :func:`csv.reader`; a UTF-8 BOM is dropped."""
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        buffer = ""
        for chunk in chunks:
            self._account(chunk)
            buffer += decoder.decode(chunk)
            if "\n" in buffer:
                *complete, buffer = buffer.split("\n")
                for line in complete:
                    yield line + "\n"
        buffer += decoder.decode(b"", final=True)
        if buffer:
            yield buffer

    def _check(self) -> None:
        if self.expected is not None and self.records > self.expected:
            raise CloudElementsReconciliationError(
                f"{self.what}: more records arrived than the {self.expected} Cloud Elements reported "
                f"({self.records} after {self.bytes} bytes); stopped reading, nothing was kept"
            )
