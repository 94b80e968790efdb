# fastcluster in a container: the wheel is built (Cython, a C compiler) in a full Python image, then
# installed alone into a slim one that runs as a non-root user.
#
#   docker build -t fastcluster .
#   docker run --rm -p 8000:8000 fastcluster                      # the built-in responder
#   FROM fastcluster + COPY your code to /app + CMD ["myproject.asgi:application"]   # your app
#
# The master is PID 1: it handles SIGTERM (graceful stop within --graceful-timeout), reaps its workers and
# picks its worker count from the container's CPU quota (--workers auto). Requests are logged to stdout
# and fastcluster's own records to stderr, for the container runtime to collect.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION} AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin fastcluster
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
WORKDIR /app
USER 10001:10001
# 8000: HTTP; 9000: the admin listener (/healthz for probes, /metrics for Prometheus).
EXPOSE 8000 9000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/healthz', timeout=2)"]
ENTRYPOINT ["fastcluster", "serve", "--host", "0.0.0.0", "--port", "8000", "--admin-host", "0.0.0.0", "--admin-port", "9000", "--access-log", "-", "--graceful-timeout", "25"]
CMD []
