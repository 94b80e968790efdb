from fastcluster.core.producer cimport Producer


cdef class OpenFile:
    cdef:
        readonly int fd
        readonly long long size
        readonly bytes etag
        readonly bytes last_modified
        long long mtime
        bytes content_type
        tuple identity
        double checked


cdef OpenFile file_of_descriptor(int fd, long long size)


cdef class FileBody(Producer):
    cdef OpenFile file


cdef class StaticFiles:
    cdef:
        readonly bytes root
        dict files   # open files by the path asked for, least recently used first
        readonly int answered_status

    cdef object lookup(self, bytes url, double now)
    cdef object answer(self, bytes url, list headers, bint head, bint keep_alive, bytes common, double now)
