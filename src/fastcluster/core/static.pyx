# Static files for `--static DIR`: maps a URL to a file that cannot lie outside DIR, answers conditional
# (ETag, Last-Modified) and range requests, and sends bodies with sendfile through a FileBody producer.
# Hot files keep their descriptor and metadata in a bounded cache, checked against the disk at most once a
# second.
import mimetypes
import os
import stat as stat_module
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from posix.unistd cimport close as close_fd

from fastcluster.core.routes cimport path_start

DEF MAX_OPEN_FILES = 256
DEF REVALIDATE_AFTER = 1.0
NOT_FOUND = object()  # inside DIR's reach but nothing to serve (or an attempt to leave DIR): 404


cdef class OpenFile:
    """One served file: its descriptor (closed when the last user lets go) and what the answers need."""

    def __init__(self, bytes path, st, bint follow_links=False):
        self.fd = -1
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW))
        self.size = st.st_size
        self.mtime = int(st.st_mtime)
        self.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        self.etag = b'"%x-%x"' % (st.st_mtime_ns, st.st_size)
        self.last_modified = formatdate(st.st_mtime, usegmt=True).encode()
        kind = mimetypes.guess_type(os.fsdecode(path))[0] or "application/octet-stream"
        self.content_type = kind.encode()

    def __dealloc__(self):
        if self.fd >= 0:
            close_fd(self.fd)


cdef OpenFile file_of_descriptor(int fd, long long size):
    """An OpenFile that owns fd (closed with it), for bodies that are not looked up by path."""
    cdef OpenFile file = OpenFile.__new__(OpenFile)
    file.fd = fd
    file.size = size
    return file


cdef class FileBody(Producer):
    """The head, then the file's bytes [offset, offset + length) by sendfile."""

    def __init__(self, bytes head, OpenFile file, long long offset, long long length):
        self.head = head
        self.file = file
        self.file_fd = file.fd
        self.file_offset = offset
        self.file_end = offset + length
        self.total = length


cdef tuple byte_range(bytes spec, long long size):
    """(first, last) of a single `bytes=` range; (-1, -1) when unsatisfiable; None to ignore the header."""
    spec = spec.strip()
    if not spec.startswith(b"bytes=") or b"," in spec:
        return None  # not a byte range, or several: the whole file is a valid answer to either
    first_text, dash, last_text = spec[6:].strip().partition(b"-")
    if not dash:
        return None
    try:
        if not first_text:
            suffix = int(last_text)
            if suffix <= 0:
                return (-1, -1)
            return (max(0, size - suffix), size - 1)
        first = int(first_text)
        last = int(last_text) if last_text.strip() else size - 1
    except ValueError:
        return None
    if first < 0 or last < first and last_text.strip():
        return None
    if first >= size:
        return (-1, -1)
    return (first, min(last, size - 1))


cdef bint not_modified(OpenFile file, dict wanted):
    match = wanted.get(b"if-none-match")
    if match is not None:
        tags = [tag.strip().removeprefix(b"W/") for tag in match.split(b",")]
        return b"*" in tags or file.etag in tags
    since = wanted.get(b"if-modified-since")
    if since is None:
        return False
    try:
        return file.mtime <= parsedate_to_datetime(since.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return False


cdef class StaticFiles:
    """The files under one directory, served at `/`."""

    def __init__(self, root: str):
        self.root = os.fsencode(os.path.realpath(root))
        self.files = {}

    cdef object lookup(self, bytes url, double now):
        """The OpenFile for url, NOT_FOUND, or None when no file matches (the built-in routes answer)."""
        cdef OpenFile cached
        raw = url[path_start(url, len(url)):].partition(b"?")[0].partition(b"#")[0]
        decoded = unquote_to_bytes(raw)
        if b"\0" in decoded or b"\\" in decoded:
            return NOT_FOUND
        segments = decoded.split(b"/")
        if b".." in segments:
            return NOT_FOUND
        relative = b"/".join([segment for segment in segments if segment and segment != b"."])
        cached = self.files.pop(relative, None)
        if cached is not None and now - cached.checked < REVALIDATE_AFTER:
            self.files[relative] = cached
            return cached
        path = os.path.realpath(os.path.join(self.root, relative))
        if path != self.root and not path.startswith(self.root + b"/"):
            return NOT_FOUND  # a symlink pointing out of the directory
        try:
            st = os.stat(path)
            if stat_module.S_ISDIR(st.st_mode):
                path = os.path.realpath(os.path.join(path, b"index.html"))
                if not path.startswith(self.root + b"/"):
                    return NOT_FOUND
                try:
                    st = os.stat(path)
                except OSError:
                    return NOT_FOUND  # a directory without an index is not listed
        except OSError:
            return None
        if not stat_module.S_ISREG(st.st_mode):
            return NOT_FOUND
        if cached is None or cached.identity != (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
            try:
                cached = OpenFile(path, st)
            except OSError:
                return NOT_FOUND  # there, but not ours to read
        cached.checked = now
        self.files[relative] = cached
        if len(self.files) > MAX_OPEN_FILES:
            del self.files[next(iter(self.files))]
        return cached

    cdef object answer(self, bytes url, list headers, bint head, bint keep_alive, bytes common, double now):
        """The answer from the file url names (bytes or a FileBody), or None when no file matches.
        `common` holds the Server and Date lines."""
        cdef OpenFile file
        found = self.lookup(url, now)
        if found is None:
            return None
        close = b"" if keep_alive else b"Connection: close\r\n"
        if found is NOT_FOUND:
            self.answered_status = 404
            return (b"HTTP/1.1 404 Not Found\r\n" + common + b"Content-Type: text/plain\r\n"
                    b"Content-Length: 10\r\n" + close + b"\r\n" + (b"" if head else b"Not Found\n"))
        file = <OpenFile>found
        wanted = {name.lower(): value for name, value in headers}
        validators = b"Last-Modified: " + file.last_modified + b"\r\nETag: " + file.etag + b"\r\n"
        if not_modified(file, wanted):
            self.answered_status = 304
            return b"HTTP/1.1 304 Not Modified\r\n" + common + validators + close + b"\r\n"
        first, length = 0, file.size
        status = b"HTTP/1.1 200 OK\r\n"
        content_range = b""
        self.answered_status = 200
        spec = wanted.get(b"range")
        if_range = wanted.get(b"if-range")
        if spec is not None and (if_range is None or if_range.strip() in (file.etag, file.last_modified)):
            chosen = byte_range(spec, file.size)
            if chosen is not None and chosen[0] < 0:
                self.answered_status = 416
                return (b"HTTP/1.1 416 Range Not Satisfiable\r\n" + common + b"Content-Range: bytes */%d\r\n"
                        % file.size + b"Content-Length: 0\r\n" + close + b"\r\n")
            if chosen is not None:
                first, length = chosen[0], chosen[1] - chosen[0] + 1
                status = b"HTTP/1.1 206 Partial Content\r\n"
                content_range = b"Content-Range: bytes %d-%d/%d\r\n" % (chosen[0], chosen[1], file.size)
                self.answered_status = 206
        answer_head = b"".join([
            status, common, b"Content-Type: ", file.content_type, b"\r\nContent-Length: %d\r\n" % length,
            content_range, validators, b"Accept-Ranges: bytes\r\n", close, b"\r\n"])
        if head or length == 0:
            return answer_head
        return FileBody(answer_head, file, first, length)
