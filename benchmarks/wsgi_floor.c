/* The least a server can do around a WSGI app: the C floor's epoll loop (ref_epoll.c) calling the app.

   A Python extension module, loaded by wsgi_floor.py. One process, epoll, non-blocking sockets; every
   request in a read (a GET ending in CRLFCRLF, no body) gets a copy of a fixed environ with its
   PATH_INFO and QUERY_STRING, the app is called, its result joined, closed, and framed with the app's
   status and headers (Content-Length added when the app gave none); one write per read, after the
   batch of ready connections is read. No header parsing, no validation, no keep-alive rules, no
   logging: a floor for the framework scenarios, as ref_epoll.c is for hello world, not a server. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE 65536
#define OUT_SIZE (1 << 20)

static const char FAILED[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
static PyObject *answered_status, *answered_headers;
static char out[OUT_SIZE];

static PyObject *start_response(PyObject *self, PyObject *args) {
    PyObject *status, *headers, *exc_info = NULL;
    if (!PyArg_ParseTuple(args, "UO|O", &status, &headers, &exc_info))
        return NULL;
    Py_INCREF(status);
    Py_XSETREF(answered_status, status);
    Py_INCREF(headers);
    Py_XSETREF(answered_headers, headers);
    Py_RETURN_NONE; /* no write(): the framework apps measured never call it */
}

static PyMethodDef start_response_def = {"start_response", start_response, METH_VARARGS, NULL};

static size_t put(size_t at, const char *text, Py_ssize_t size) {
    if (size < 0 || at + (size_t)size > OUT_SIZE)
        return OUT_SIZE + 1;
    memcpy(out + at, text, size);
    return at + size;
}

static size_t put_str(size_t at, PyObject *text) {
    Py_ssize_t size;
    const char *data = PyUnicode_AsUTF8AndSize(text, &size);
    return data ? put(at, data, size) : OUT_SIZE + 1;
}

/* The app's answer to one request at out + at; the new end, or past OUT_SIZE when it failed (printed). */
static size_t answer(size_t at, PyObject *app, PyObject *environ, PyObject *responder, PyObject *new_input) {
    PyObject *input = PyObject_CallNoArgs(new_input);
    if (!input || PyDict_SetItemString(environ, "wsgi.input", input) < 0) {
        Py_XDECREF(input);
        goto failed;
    }
    Py_DECREF(input);
    Py_CLEAR(answered_status); /* an app that never calls start_response fails, not answers the last status */
    PyObject *result = PyObject_CallFunctionObjArgs(app, environ, responder, NULL);
    if (!result)
        goto failed;
    PyObject *body = PyBytes_FromStringAndSize(NULL, 0), *iterator = PyObject_GetIter(result), *piece;
    while (body && iterator && (piece = PyIter_Next(iterator))) {
        PyBytes_Concat(&body, piece);
        Py_DECREF(piece);
    }
    Py_XDECREF(iterator);
    PyObject *closed = PyObject_HasAttrString(result, "close") ? PyObject_CallMethod(result, "close", NULL)
                                                                 : Py_NewRef(Py_None);
    Py_DECREF(result);
    Py_XDECREF(closed);
    if (!body || !closed || PyErr_Occurred() || !answered_status) {
        Py_XDECREF(body);
        goto failed;
    }
    int has_length = 0;
    at = put(at, "HTTP/1.1 ", 9);
    at = put_str(at, answered_status);
    at = put(at, "\r\n", 2);
    Py_ssize_t count = PyList_Check(answered_headers) ? PyList_GET_SIZE(answered_headers) : 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(answered_headers, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2)
            continue;
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(pair, 0));
        if (!name)
            break;
        has_length |= strcasecmp(name, "content-length") == 0;
        at = put_str(at, PyTuple_GET_ITEM(pair, 0));
        at = put(at, ": ", 2);
        at = put_str(at, PyTuple_GET_ITEM(pair, 1));
        at = put(at, "\r\n", 2);
    }
    if (!has_length) {
        char line[48];
        at = put(at, line, snprintf(line, sizeof line, "Content-Length: %zd\r\n", PyBytes_GET_SIZE(body)));
    }
    at = put(at, "\r\n", 2);
    at = put(at, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body));
    Py_DECREF(body);
    if (at <= OUT_SIZE && !PyErr_Occurred())
        return at;
failed:
    PyErr_Print();
    return OUT_SIZE + 1;
}

/* A read's answers wait in `out` until every ready connection of the epoll_wait has been read and
   answered, as fastcluster's app workers do: a client woken by the first write finds the others there,
   instead of one wake-up of the idle client per answer (a floor that wrote at once would lose to it). */
struct answer {
    int fd;
    size_t start, end;
};

static size_t send_all(struct answer *sent, int *count) {
    for (int i = 0; i < *count; i++)
        if (write(sent[i].fd, out + sent[i].start, sent[i].end - sent[i].start) < 0)
            close(sent[i].fd);
    *count = 0;
    return 0;
}

/* serve(port, app, environ, new_input): never returns (the process is stopped by a signal). */
static PyObject *serve(PyObject *self, PyObject *args) {
    int port, one = 1;
    PyObject *app, *template, *new_input;
    if (!PyArg_ParseTuple(args, "iOO!O", &port, &app, &PyDict_Type, &template, &new_input))
        return NULL;
    PyObject *responder = PyCFunction_New(&start_response_def, NULL);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (void *)&address, sizeof address) || listen(listener, 4096))
        return PyErr_SetFromErrno(PyExc_OSError);
    int poller = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener}, events[256];
    epoll_ctl(poller, EPOLL_CTL_ADD, listener, &event);
    static char buf[READ_SIZE + 1];
    static struct answer sent[256];
    for (;;) {
        int ready = epoll_wait(poller, events, 256, -1), answered = 0;
        size_t at = 0;
        if (ready < 0 && PyErr_CheckSignals() < 0)
            return NULL;
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event watch = {.events = EPOLLIN, .data.fd = client};
                    epoll_ctl(poller, EPOLL_CTL_ADD, client, &watch);
                }
                continue;
            }
            ssize_t got = read(fd, buf, READ_SIZE);
            if (got <= 0) {
                close(fd);
                continue;
            }
            buf[got] = 0;
            size_t start = at;
            for (char *request = buf, *end; (end = memmem(request, buf + got - request, "\r\n\r\n", 4));
                 request = end + 4) {
                char *path = memchr(request, ' ', end - request);
                char *path_end = path ? memchr(path + 1, ' ', end - path - 1) : NULL;
                if (!path_end)
                    break;
                char *query = memchr(path + 1, '?', path_end - path - 1);
                PyObject *environ = PyDict_Copy(template);
                PyObject *path_info = PyUnicode_DecodeLatin1(path + 1, (query ? query : path_end) - path - 1, NULL);
                PyObject *query_string = query ? PyUnicode_DecodeLatin1(query + 1, path_end - query - 1, NULL)
                                               : PyUnicode_FromString("");
                PyDict_SetItemString(environ, "PATH_INFO", path_info);
                PyDict_SetItemString(environ, "QUERY_STRING", query_string);
                Py_DECREF(path_info);
                Py_DECREF(query_string);
                size_t next = answer(at, app, environ, responder, new_input);
                Py_DECREF(environ);
                at = next <= OUT_SIZE ? next : put(at, FAILED, sizeof FAILED - 1);
            }
            if (at > start) {
                sent[answered].fd = fd;
                sent[answered].start = start;
                sent[answered++].end = at;
            }
            if (at > OUT_SIZE / 2) /* room for the next read's answers */
                at = send_all(sent, &answered);
        }
        send_all(sent, &answered);
    }
}

static PyMethodDef methods[] = {{"serve", serve, METH_VARARGS, "serve(port, app, environ, new_input)"},
                                {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "wsgi_floor", NULL, -1, methods};

PyMODINIT_FUNC PyInit_wsgi_floor(void) { return PyModule_Create(&module); }
