"""Body formats and charsets: JSON, NDJSON (JSON lines) and CSV bodies, in any charset.

A JSON body is read whole (within ``limits.max_body_mb``) and parsed once, as before; its
``Content-Type`` charset, when one is given and is not UTF-8, decodes it first (Latin-1,
windows-1252, UTF-16 ...). Without a charset a body is UTF-8, as JSON requires.

NDJSON and CSV bodies are *streamed*: an export of gigabytes is never held whole. The
client reads the body in chunks and :func:`split_pieces` cuts it into pieces of about
``piece_bytes`` that end on a record boundary (a newline; for CSV one outside quotes). Each
piece becomes one :class:`~ingestion_assets.http.page.Page` whose ``body`` is exactly those
bytes as received, so the raw archive still holds the response byte for byte (the pieces'
concatenation) and memory stays bounded by a piece. A :class:`RecordReader` turns the pieces
into records, in order, keeping what a later piece needs (the CSV header, the byte order a
UTF-16 BOM declared): the fetch and the re-read of stored pages use the same reader, so a
page counts the same records whenever it is read.

A streamed body has its own budget (``limits.max_stream_mb``, the whole body) besides the
request deadline, and no single record may be longer than ``limits.max_body_mb``: a body
that never ends, or a line that never ends, fails with a clear error instead of eating memory.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

FORMATS = ("json", "ndjson", "csv")
_MIB = 1024 * 1024


class BodyFormatError(ValueError):
    """A body that cannot be read in its declared format (a line not JSON, a short CSV row)."""


class RecordTooLongError(BodyFormatError):
    """No record boundary within the record budget (a line that never ends)."""


class CharsetError(BodyFormatError):
    """A body not in its declared charset, or a charset this client cannot read."""


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV body is written.

    Attributes:
        delimiter: The field separator (one character).
        quotechar: The quote character; a doubled one inside quotes is a literal quote.
        header: The first row names the columns; without it ``columns`` must.
        columns: The column names, in order (required when ``header`` is false; with a
            header, the header must match them).
        infer_types: Turn the text of columns the endpoint does not declare into numbers and
            booleans when every value of the first piece reads as one (``"12"`` -> 12); a
            column of a declared type is always left as text for the normalizer to cast.
        declared: Columns whose type the endpoint declares (left as text).
    """

    delimiter: str = ","
    quotechar: str = '"'
    header: bool = True
    columns: tuple[str, ...] = ()
    infer_types: bool = True
    declared: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1 or len(self.quotechar) != 1:
            raise ValueError("csv delimiter and quotechar must be one character each")
        if self.delimiter in "\r\n" or self.quotechar in "\r\n" or self.delimiter == self.quotechar:
            raise ValueError("csv delimiter and quotechar must differ and not be a newline")
        if not self.header and not self.columns:
            raise ValueError("a CSV body without a header row needs `columns`")


@dataclass(frozen=True)
class BodyFormat:
    """What a response body is: ``json`` (read whole), ``ndjson`` or ``csv`` (streamed)."""

    kind: str = "json"
    csv: CsvOptions = CsvOptions()
    piece_bytes: int = _MIB
    #: Accept a streamed body sent without ``Content-Length`` or chunked framing (its end is
    #: the connection closing, so a cut at a record boundary looks like the end).
    accept_unframed: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {self.kind!r}")
        if self.piece_bytes < 1:
            raise ValueError("piece_bytes must be positive")

    @property
    def streamed(self) -> bool:
        return self.kind != "json"


JSON = BodyFormat()

# ------------------------------------------------------------------------------ charsets
_CHARSET = re.compile(r';\s*charset\s*=\s*"?([^";\s]+)"?', re.IGNORECASE)


def charset_of(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a ``Content-Type`` value (lower case), or None."""
    match = _CHARSET.search(content_type or "")
    return match.group(1).lower() if match else None


def codec_name(charset: str) -> str:
    """Python's codec for an HTTP charset label; :class:`BodyFormatError` when there is none."""
    try:
        info = codecs.lookup(charset)
    except LookupError:
        raise CharsetError(f"unknown charset {charset[:40]!r} in Content-Type") from None
    # Bytes-to-bytes codecs (base64, zlib) and the shifting UTF-7 are no body charsets.
    if not getattr(info, "_is_text_encoding", True) or info.name in ("utf-7", "rot-13"):
        raise CharsetError(f"charset {charset[:40]!r} is not a text encoding this client reads")
    return info.name


def _resolve(name: str, head: bytes) -> tuple[str, int]:
    """The byte-order-fixed codec and the BOM length, from the declared codec and the BOM.

    A UTF-16/32 body without a BOM is little-endian (as browsers read ``charset=utf-16``).
    """
    if name == "utf-8":
        return "utf-8", 3 if head.startswith(codecs.BOM_UTF8) else 0
    for wide, le_bom, be_bom in (("utf-32", codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE),
                                 ("utf-16", codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        if name == wide:
            if head.startswith(le_bom):
                return f"{wide}-le", len(le_bom)
            if head.startswith(be_bom):
                return f"{wide}-be", len(be_bom)
            return f"{wide}-le", 0
    return name, 0


def _decode(content: bytes, codec: str, charset: str, at: int = 0) -> str:
    try:
        return content.decode(codec)
    except UnicodeDecodeError as exc:
        raise CharsetError(
            f"body is not valid {charset} (as its Content-Type says): {exc.reason} at byte "
            f"{at + exc.start}"
        ) from None


def json_text(content: bytes, content_type: str | None) -> bytes | str:
    """A JSON body ready for orjson: the bytes when UTF-8 (or no charset), else decoded text."""
    charset = charset_of(content_type)
    if charset is None:
        return content
    codec, bom = _resolve(codec_name(charset), content[:4])
    if codec == "utf-8":
        return content[bom:]
    return _decode(content[bom:], codec, charset, bom)


# ------------------------------------------------------------------------------ records
class RecordReader:
    """The records of a streamed body's pieces, read in order (stateful; one per body)."""

    def __init__(self, fmt: BodyFormat, content_type: str | None = None) -> None:
        self.fmt = fmt
        self.charset = charset_of(content_type) or "utf-8"
        self._declared = codec_name(self.charset)
        self._codec: str | None = None
        self._offset = 0  # bytes read so far, for error positions
        self._line = 0  # lines (NDJSON) or rows (CSV) read so far
        self._columns: list[str] | None = list(fmt.csv.columns) or None
        self._converters: dict[str, Any] | None = None

    def records(self, piece: bytes) -> list[Any]:
        """The records of the next piece (one that ends on a record boundary)."""
        first = self._codec is None
        if first:
            self._codec, bom = _resolve(self._declared, piece[:4])
            piece = piece[bom:]
            self._offset += bom
        try:
            if self.fmt.kind == "ndjson":
                return self._ndjson(piece)
            text = _decode(piece, self._codec, self.charset, self._offset)
            return self._csv(text, first)
        finally:
            self._offset += len(piece)

    def _ndjson(self, piece: bytes) -> list[Any]:
        if self._codec == "utf-8":
            lines: Sequence[bytes | str] = piece.split(b"\n")
        else:
            lines = _decode(piece, self._codec, self.charset, self._offset).split("\n")
        lines = [line for line in lines if line.strip()]
        start = self._line
        try:
            records = [orjson.loads(line) for line in lines]
        except orjson.JSONDecodeError:
            records = None  # find the line, for the message
        if records is None:
            for number, line in enumerate(lines, start + 1):
                try:
                    orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise BodyFormatError(
                        f"NDJSON record {number} (a non-blank line) is not JSON: {exc.msg}"
                        + (" (the body is not valid UTF-8)" if "UTF-8" in exc.msg else "")
                    ) from None
        self._line += len(lines)
        for number, record in enumerate(records or (), start + 1):
            if not isinstance(record, dict):
                raise BodyFormatError(
                    f"NDJSON record {number} is a {type(record).__name__}, not an object"
                )
        return records or []

    def _csv(self, text: str, first: bool) -> list[dict[str, Any]]:
        opts = self.fmt.csv
        rows = csv.reader(io.StringIO(text, newline=""), delimiter=opts.delimiter,
                          quotechar=opts.quotechar, doublequote=True, strict=True)
        try:
            table = list(rows)
        except csv.Error as exc:
            raise BodyFormatError(f"CSV row near {self._line + 1} cannot be read: {exc}") from None
        if first and opts.header and table:
            self._take_header(table.pop(0))
            self._line += 1
        columns = self._columns or []
        records = []
        for row in table:
            self._line += 1
            if not row or row == [""]:
                continue  # a blank line
            if len(row) != len(columns):
                raise BodyFormatError(
                    f"CSV row {self._line} has {len(row)} fields, the header {len(columns)}"
                )
            records.append(dict(zip(columns, [v if v != "" else None for v in row],
                                    strict=True)))
        if self._converters is None and records:  # the first piece with rows decides
            self._converters = _infer(records, columns, opts) if opts.infer_types else {}
        return _convert(records, self._converters or {})

    def _take_header(self, header: list[str]) -> None:
        names = [h.strip().lstrip("\ufeff") for h in header]
        if not all(names) or len(set(names)) != len(names):
            raise BodyFormatError(f"CSV header row has empty or repeated names: {names[:20]}")
        declared = list(self.fmt.csv.columns)
        if declared and names != declared:
            raise BodyFormatError(f"CSV header {names[:20]} differs from `columns` {declared}")
        self._columns = names


_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_BOOLS = {"true": True, "false": False, "TRUE": True, "FALSE": False, "True": True,
          "False": False}


def _infer(records: list[dict[str, Any]], columns: list[str], opts: CsvOptions) -> dict:
    """Per undeclared column, a converter from text when every value of these records fits.

    Numbers with leading zeros ("007", zip codes) stay text.
    """
    converters: dict[str, Any] = {}
    for name in columns:
        if name in opts.declared:
            continue
        values = [r[name] for r in records if r[name] is not None]
        if not values:
            continue
        if all(_INT.fullmatch(v) for v in values):
            converters[name] = _as(int, _INT)
        elif all(_FLOAT.fullmatch(v) for v in values):
            converters[name] = _as(float, _FLOAT)
        elif all(v in _BOOLS for v in values):
            converters[name] = _BOOLS.get
    return converters


def _as(kind: type, pattern: re.Pattern) -> Any:
    def convert(value: str) -> Any:  # a later value that does not fit stays text
        return kind(value) if pattern.fullmatch(value) else value

    return convert


def _convert(records: list[dict[str, Any]], converters: dict[str, Any]) -> list[dict[str, Any]]:
    if converters:
        for record in records:
            for name, convert in converters.items():
                value = record[name]
                if value is not None:
                    converted = convert(value)
                    record[name] = value if converted is None else converted
    return records


# ------------------------------------------------------------------------------ pieces
def _units(codec: str) -> tuple[bytes, int]:
    """The encoded newline and the code-unit width of the codec."""
    newline = "\n".encode(codec)
    return newline, len(newline)


def split_pieces(
    chunks: Iterable[bytes],
    fmt: BodyFormat,
    content_type: str | None,
    *,
    max_record_bytes: int,
) -> Iterator[bytes]:
    """Cut a body arriving in ``chunks`` into pieces ending on record boundaries.

    Each piece is the shortest run of whole records of at least ``fmt.piece_bytes`` (the
    last one excepted), as the bytes arrived. Raises :class:`BodyFormatError` when no record
    boundary comes within ``max_record_bytes`` (a line that never ends).
    """
    declared = codec_name(charset_of(content_type) or "utf-8")
    buf = bytearray()
    cutter: _Cutter | None = None
    target = fmt.piece_bytes
    for chunk in chunks:
        buf += chunk
        if cutter is None:
            if len(buf) < 4:
                continue
            cutter = _Cutter(fmt, _resolve(declared, bytes(buf[:4]))[0])
        while len(buf) >= target:
            cut = cutter.boundary(buf, target)
            if not cut:
                if len(buf) > target + max_record_bytes:
                    raise RecordTooLongError(
                        f"no record boundary within {len(buf)} bytes (a record longer than "
                        f"{max_record_bytes / _MIB:g} MiB, limits.max_body_mb); stopped reading"
                    )
                break
            yield bytes(buf[:cut])
            del buf[:cut]
            cutter.advance(cut)
    if buf:
        yield bytes(buf)


class _Cutter:
    """Finds record boundaries in the bytes of a body: newlines (for CSV, outside quotes).

    Scans forward only, so a quoted CSV field with many line breaks costs one pass.
    """

    def __init__(self, fmt: BodyFormat, codec: str) -> None:
        self.newline = "\n".encode(codec)
        self.unit = len(self.newline)  # 1, or 2 / 4 bytes for UTF-16 / UTF-32
        self.codec = codec
        self.quote = fmt.csv.quotechar if fmt.kind == "csv" else None
        self.offset = 0  # stream offset of the buffer's first byte (for alignment)
        self._scanned = 0  # buffer bytes whose quotes are counted
        self._quotes = 0

    def advance(self, cut: int) -> None:
        self.offset += cut
        self._scanned = max(0, self._scanned - cut)
        self._quotes = 0  # a piece ends outside quotes

    def boundary(self, buf: bytearray, target: int) -> int:
        """The end of the first newline at or past ``target`` outside quotes (0: none yet)."""
        start = max(self._scanned, target - len(self.newline))
        while True:
            at = buf.find(self.newline, start)
            if at < 0:
                return 0
            if (self.offset + at) % self.unit:  # inside a wider character: go on
                start = at + 1
                continue
            cut = at + len(self.newline)
            if self.quote is None:
                return cut
            self._quotes += self._count(buf, self._scanned, cut)
            self._scanned = cut
            if self._quotes % 2 == 0:
                return cut
            start = cut

    def _count(self, buf: bytearray, start: int, end: int) -> int:
        if self.unit == 1 and self.codec in ("utf-8", "ascii") or _single_byte(self.codec):
            return buf.count(self.quote.encode(self.codec), start, end)
        return bytes(buf[start:end]).decode(self.codec, "replace").count(self.quote)


def _single_byte(codec: str) -> bool:
    return codec.startswith(("latin", "iso8859", "cp125", "windows-125", "cp437", "cp850"))


__all__ = [
    "FORMATS", "JSON", "BodyFormat", "BodyFormatError", "CharsetError", "CsvOptions",
    "RecordReader", "RecordTooLongError",
    "charset_of", "codec_name", "json_text", "split_pieces",
]
