"""Recognising pickles by their opcode stream, and scanning them with picklescan.

A pickle has no magic number: protocol 0 is plain ASCII, protocol 1 is binary without a
header, and only protocols 2–5 start with PROTO (0x80). So the scanner walks the opcodes
the way the unpickler reads them — arguments parsed as the unpickler parses them, the
stack, marks and memo tracked — without ever unpickling. A stream is a pickle when the
unpickler would act on it: it reaches STOP, or it calls something (REDUCE, BUILD, INST, OBJ,
NEWOBJ) before it breaks off, since everything before the break already ran. A file on disk
is walked to its end if need be (no slower than picklescan reading it); a stream that can be
read only once (an archive member, a decompressed stream) is walked up to WALK_BYTES, and is
a pickle if it is still well-formed there, since what follows could be anything.
"""

from __future__ import annotations

import io
import itertools
import pickle
import pickletools
import struct

from picklescan import scanner as picklescan

from models_catalog.scanning.report import Finding

WALK_BYTES = 4 * 1024 * 1024
_LINE_LIMIT = 64 * 1024
_MEMO_LIMIT = 1_000_000  # memo keys tracked; past that, reads of the memo are not checked

_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
_CALLS = frozenset({"REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"})
_IMPORTS = frozenset({"GLOBAL", "STACK_GLOBAL", "INST"})
_MEMO_WRITES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_READS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_LINE_OPCODES = frozenset({"INT", "LONG", "FLOAT", "STRING", "UNICODE", "GET", "PUT",
                           "PERSID", "GLOBAL", "INST"})
# Arguments that carry their own length: pickletools' marker → the length's struct format.
_SIZED = {pickletools.TAKEN_FROM_ARGUMENT1: "<B", pickletools.TAKEN_FROM_ARGUMENT4: "<i",
          pickletools.TAKEN_FROM_ARGUMENT4U: "<I", pickletools.TAKEN_FROM_ARGUMENT8U: "<Q"}
_TEXT_ARGUMENTS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"})


class _NotPickle(Exception):
    """The unpickler would stop here."""


class _RanOut(Exception):
    """The data ends inside an opcode."""


class _Enough(Exception):
    """The walk's budget is spent on well-formed opcodes."""


class _Reader:
    def __init__(self, stream, size: int | None):
        self.stream, self.size = stream, size
        self.seekable = size is not None and stream.seekable()
        self.budget = None if self.seekable else WALK_BYTES
        self.read_bytes = 0

    def _count(self, data: bytes) -> None:
        self.read_bytes += len(data)
        if self.budget is not None and self.read_bytes > self.budget:
            raise _Enough
        if not data and getattr(self.stream, "reached_limit", False):
            raise _Enough  # cut off by the scan's cap, not by its end

    def read(self, count: int) -> bytes:
        data = self.stream.read(count)
        self._count(data)
        if len(data) < count:
            raise _RanOut
        return data

    def skip(self, count: int) -> None:
        """Pass over an argument's payload without keeping it."""
        if self.seekable:
            if self.stream.tell() + count > self.size:
                raise _RanOut
            self.stream.seek(count, io.SEEK_CUR)
            return
        while count:
            chunk = self.read(min(count, 1024 * 1024))
            count -= len(chunk)

    def line(self) -> bytes | None:
        """A newline-terminated argument without its newline; None when it is too long to
        keep (it was passed over)."""
        data = self.stream.readline(_LINE_LIMIT)
        self._count(data)
        if data.endswith(b"\n"):
            return data[:-1]
        if len(data) < _LINE_LIMIT:
            raise _RanOut
        while not data.endswith(b"\n"):
            data = self.stream.readline(1024 * 1024)
            self._count(data)
            if not data:
                raise _RanOut
        return None


def _number(text: bytes | None, base: int) -> int | None:
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        raise _NotPickle from None


def _line_argument(name: str, reader: _Reader):
    """Parse a protocol-0 argument as the unpickler does. pickletools' readers are stricter
    (to the unpickler "I0x10" is 16), and a walk stricter than the unpickler could be led
    past a pickle that loads."""
    text = reader.line()
    if name == "INT" and text in (b"00", b"01"):  # protocol 0's False and True
        return None
    if name in ("INT", "LONG"):
        if name == "LONG" and text is not None and text.endswith(b"L"):
            text = text[:-1]
        return _number(text, 0)
    if name in ("GET", "PUT"):
        if text is None:
            raise _NotPickle
        return _number(text, 10)
    if text is None:
        if name in ("GLOBAL", "INST"):
            raise _NotPickle
        return None
    try:
        if name == "FLOAT":
            float(text)
        elif name == "STRING":
            if len(text) < 2 or text[:1] != text[-1:] or text[:1] not in (b"'", b'"'):
                raise _NotPickle
        elif name == "UNICODE":
            text.decode("raw-unicode-escape")
        elif name == "PERSID":
            text.decode("ascii")
        else:  # GLOBAL and INST: a module and a name; other than dotted identifiers, the
            # import fails and the load stops there
            second = reader.line()
            for part in (text, second):
                if part is None or not all(word.isidentifier()
                                           for word in part.decode("utf-8").split(".")):
                    raise _NotPickle
    except ValueError:  # UnicodeDecodeError included
        raise _NotPickle from None
    return None


def _binary_argument(op, reader: _Reader):
    if op.arg.n >= 0:  # fixed width
        return op.arg.reader(io.BytesIO(reader.read(op.arg.n)))
    width = struct.calcsize(_SIZED[op.arg.n])
    length = struct.unpack(_SIZED[op.arg.n], reader.read(width))[0]
    if length < 0:
        raise _NotPickle
    if op.name in _TEXT_ARGUMENTS and length <= _LINE_LIMIT:
        try:
            reader.read(length).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise _NotPickle from None
    else:
        reader.skip(length)
    return None


class _Walk:
    """The unpickler's stack, marks and memo, by count: what makes it stop, never what
    it builds."""

    def __init__(self):
        self.depth = 0        # objects on the stack above the last mark
        self.marks: list[int] = []  # the depths the marks saved
        self.memo: set[int] = set()
        self.called = False
        self.imported = False

    def step(self, op, arg) -> bool:
        """Apply one opcode; True at STOP."""
        before = op.stack_before
        if pickletools.markobject in before or (op.name == "POP" and self.depth == 0):
            if not self.marks:
                raise _NotPickle
            self.depth = self.marks.pop()
            needed = (before.index(pickletools.markobject)
                      if pickletools.markobject in before else 0)
        else:
            needed = len(before)
        if self.depth < needed or (op.name in _MEMO_WRITES and self.depth == 0):
            raise _NotPickle
        if op.name == "PROTO" and arg > pickle.HIGHEST_PROTOCOL:
            raise _NotPickle
        if op.name in _MEMO_READS and arg not in self.memo and len(self.memo) < _MEMO_LIMIT:
            raise _NotPickle
        if op.name in _MEMO_WRITES and len(self.memo) < _MEMO_LIMIT:
            self.memo.add(len(self.memo) if op.name == "MEMOIZE" else arg)
        self.depth -= needed
        if op.name == "MARK":
            self.marks.append(self.depth)
            self.depth = 0
        else:
            self.depth += len(op.stack_after)
        self.called |= op.name in _CALLS
        self.imported |= op.name in _IMPORTS
        return op.name == "STOP"


def is_pickle(stream, size: int | None = None) -> bool:
    """Whether the data `stream` holds from where it stands is a pickle. A seekable stream
    of known `size` is walked to the end if need be, passing over long arguments; any other
    is read forward at most about WALK_BYTES. Never unpickles."""
    return _walk(stream, size, trust_header=True)[0]


def runs_code(stream, size: int | None = None) -> bool:
    """Whether the data is a pickle that imports something and calls it: the test for a
    file that is another format too (a polyglot), where a mere well-formed opcode or two
    can be chance."""
    walk = _walk(stream, size, trust_header=False)[1]
    return walk.imported and walk.called


def _walk(stream, size: int | None, *, trust_header: bool) -> tuple[bool, _Walk]:
    reader = _Reader(stream, size)
    walk = _Walk()
    try:
        for count in itertools.count():
            op = _OPCODES.get(reader.read(1))
            if op is None:
                raise _NotPickle
            if op.name in _LINE_OPCODES:
                arg = _line_argument(op.name, reader)
            elif op.arg is not None:
                arg = _binary_argument(op, reader)
            else:
                arg = None
            if (trust_header and op.name == "PROTO" and count == 0
                    and 2 <= arg <= pickle.HIGHEST_PROTOCOL):
                return True, walk  # what pickle.dump writes for protocols 2–5
            if walk.step(op, arg):
                return True, walk
    except _Enough:
        return True, walk
    except (_RanOut, _NotPickle):
        return walk.called, walk


class RewindableStream:
    """A forward-only stream (a decompressor, an archive member) made readable for the walk
    and for picklescan: it ends at `limit` bytes (`reached_limit` then says so, so a
    decompression bomb stops there), it can step back one byte (picklescan's only seek), and
    until `release()` it keeps what it read so that `rewind()` can replay it."""

    def __init__(self, raw, limit: int):
        self.raw, self.limit = raw, limit
        self.position = 0
        self._buffer = bytearray()  # raw bytes from stream position `_base` on
        self._base = 0
        self._keeping = True
        self.reached_limit = False  # there was more than `limit` bytes

    def _advance(self, count: int) -> None:
        self.position += count
        if self.position >= self.limit and not self.reached_limit:
            self.reached_limit = bool(self.raw.read(1))

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.position

    def rewind(self) -> None:
        if self._base:
            raise io.UnsupportedOperation("the start of the stream is no longer kept")
        self.position = 0

    def release(self) -> None:
        """Stop keeping what was read (a long scan follows)."""
        self._keeping = False
        self._drop()

    def _drop(self) -> None:
        consumed = self.position - 1 - self._base  # the last byte stays, for a step back
        if not self._keeping and consumed > 0:
            del self._buffer[:consumed]
            self._base += consumed

    def _room(self, size: int | None) -> int:
        room = self.limit - self.position
        return room if size is None or size < 0 else min(size, room)

    def read(self, size: int | None = -1) -> bytes:
        size = self._room(size)
        start = self.position - self._base
        while len(self._buffer) - start < size:
            chunk = self.raw.read(min(size - (len(self._buffer) - start), 1024 * 1024))
            if not chunk:
                break
            self._buffer += chunk
        data = bytes(self._buffer[start:start + size])
        self._advance(len(data))
        self._drop()
        return data

    def readline(self, size: int | None = -1) -> bytes:
        size = self._room(size)
        start = self.position - self._base
        end = min(len(self._buffer), start + size)
        cut = self._buffer.find(b"\n", start, end)
        if cut >= 0:
            end = cut + 1
        elif end - start < size:  # the kept bytes end before the line does
            self._buffer += self.raw.readline(size - (end - start))
            end = len(self._buffer)
        data = bytes(self._buffer[start:end])
        self._advance(len(data))
        self._drop()
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR and offset in (0, -1) and self.position + offset >= self._base:
            self.position += offset
            return self.position
        raise io.UnsupportedOperation("only a one-byte step back is supported")


def scan(stream, rel: str, label: str) -> list[Finding]:
    """picklescan over one pickle stream (several pickles in a row are all read). `label`
    names it in messages: the file, or the member of an archive inside it."""
    return scanned(lambda: picklescan.scan_pickle_bytes(stream, label), rel, label)


def scanned(run, rel: str, label: str) -> list[Finding]:
    """The findings of one picklescan call `run()`; a file that breaks the scanner can't be
    shown safe, so that is a finding too."""
    try:
        result = run()
    except Exception as exc:  # a file crafted to break the parser is itself a finding
        return [Finding(rel, "high", "pickle_unparseable",
                        f"{label} breaks the pickle scanner ({exc.__class__.__name__}); a "
                        "crafted file does that. It can't be shown safe.")]
    return findings_of(result, rel, label)


def findings_of(result, rel: str, label: str) -> list[Finding]:
    findings = []
    for found in result.globals:
        name = f"{found.module}.{found.name}"
        if found.safety == picklescan.SafetyLevel.Dangerous:
            findings.append(Finding(rel, "critical", "dangerous_import",
                                    f"{label} imports {name} when loaded: unpickling it runs "
                                    "that code (e.g. a shell command). Never load this file."))
        elif found.safety == picklescan.SafetyLevel.Suspicious:
            findings.append(Finding(rel, "medium", "unknown_import",
                                    f"{label} imports {name}, which is not known to be safe; "
                                    "loading the file calls it."))
    if result.scan_err:
        findings.append(Finding(rel, "medium", "pickle_unparseable",
                                f"{label} could not be fully parsed as pickle data, so parts "
                                "of it were not checked."))
    return findings
