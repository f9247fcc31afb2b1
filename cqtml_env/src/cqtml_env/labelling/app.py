"""The labelling page's web app: a thin FastAPI layer over :class:`LabellingService`.

Routes (all by id, never by path):

* ``GET /`` and ``GET /static/{app.js,app.css}`` — the page, shipped in the package;
* ``GET /api/info`` — frame rate, devices and their colours, strategies;
* ``POST /api/next`` ``{labeller, selection?}`` — the labeller's current pair;
* ``POST /api/answer`` ``{labeller, pair_id, choice, played_fraction, seconds?}`` — journaled
  (fsync) before the answer comes back, with the next pair;
* ``POST /api/undo`` ``{labeller}`` — the latest answer is cancelled and shown again;
* ``GET /api/audio/{pair_id}.wav?labeller=NAME`` — only the labeller's current clip;
* ``GET /api/stats``.

Security: with a ``token`` every request needs it (``?token=``, header ``X-CQTML-Token`` or the
cookie the page gets when opened with the token); when bound to loopback the ``Host`` header
must name it (no DNS rebinding); POST bodies must be JSON and at most ``MAX_BODY`` bytes;
bad requests get a 4xx with ``{"error": ...}`` and change nothing.
"""


import json
import secrets
from importlib.resources import files
from typing import Any

from cqtml_env.labelling.journal import CHOICES
from cqtml_env.labelling.service import LabellingError, LabellingService

MAX_BODY = 4096
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)


def _static_files() -> dict[str, bytes]:
    base = files("cqtml_env") / "labelling" / "static"
    return {name: (base / name).read_bytes() for name in STATIC}


def _fields(data: Any, spec: dict[str, tuple[type | tuple, bool]]) -> dict:
    """Check a JSON object against ``{key: (types, required)}``; unknown keys are refused."""
    if not isinstance(data, dict):
        raise LabellingError("the request body must be a JSON object")
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise LabellingError(f"unknown field(s) {unknown}; expected {sorted(spec)}")
    out = {}
    for key, (types, required) in spec.items():
        if key not in data:
            if required:
                raise LabellingError(f"missing field {key!r}")
            continue
        v = data[key]
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise LabellingError(f"field {key!r} has the wrong type")
        if not isinstance(v, types):
            raise LabellingError(f"field {key!r} must be {getattr(types, '__name__', types)}")
        out[key] = v
    return out


def create_app(
    service: LabellingService,
    *,
    token: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
):
    """The FastAPI app for ``service``; ``token`` (if given) is required on every request."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    static = _static_files()
    loopback = host in LOOPBACK
    app = FastAPI(title="cqtml-label", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if loopback:
            h = request.headers.get("host", "")
            name = h.rsplit(":", 1)[0] if not h.startswith("[") else h.split("]")[0] + "]"
            if name not in LOOPBACK:
                return error(421, f"unexpected Host header {h!r}: open the page via 127.0.0.1")
        got = None
        if token is not None:
            got = (
                request.query_params.get("token")
                or request.headers.get("x-cqtml-token")
                or request.cookies.get("cqtml_token")
            )
            if not got or not secrets.compare_digest(str(got), token):
                return error(401, "access token missing or wrong: open the link cqtml-label printed")
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error(400, "bad Content-Length")
            if int(length) > MAX_BODY:
                return error(413, f"request body over {MAX_BODY} bytes")
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        if token is not None and request.query_params.get("token") == token:
            response.set_cookie("cqtml_token", token, httponly=True, samesite="strict")
        return response

    async def body(request: Request, spec) -> dict:
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/json":
            raise LabellingError("send the body as application/json", 415)
        raw = b""
        async for chunk in request.stream():  # also caps bodies sent without Content-Length
            raw += chunk
            if len(raw) > MAX_BODY:
                raise LabellingError(f"request body over {MAX_BODY} bytes", 413)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LabellingError(f"the body is not valid JSON ({exc})") from None
        return _fields(data, spec)

    @app.exception_handler(LabellingError)
    async def on_error(request: Request, exc: LabellingError):
        return error(exc.status, str(exc))

    @app.get("/")
    async def index():
        return Response(static["index.html"], media_type=STATIC["index.html"])

    @app.get("/static/{name}")
    async def static_file(name: str):
        if name not in STATIC or name == "index.html":
            return error(404, "no such file")
        return Response(static[name], media_type=STATIC[name])

    @app.get("/api/info")
    async def info():
        from cqtml_env.env.render import device_colour

        c = service.contract
        colours = [
            "#" + "".join(f"{int(v):02x}" for v in device_colour(d)) for d in range(c.num_devices)
        ]
        return {
            "frame_rate": c.frame_rate,
            "num_devices": c.num_devices,
            "num_frames": c.num_frames,
            "colours": colours,
            "choices": list(CHOICES),
            "selection": service.cfg.selection,
            "token_required": token is not None,
        }

    # sync handlers run in the thread pool: fsync and pool building never block the loop
    @app.post("/api/next")
    async def next_pair(request: Request):
        d = await body(request, {"labeller": (str, True), "selection": (str, False)})
        return await _run(_next, d)

    def _next(d):
        if "selection" in d:
            service.set_selection(d["labeller"], d["selection"])
        return service.next_pair(d["labeller"])

    @app.post("/api/answer")
    async def answer(request: Request):
        d = await body(
            request,
            {
                "labeller": (str, True),
                "pair_id": (str, True),
                "choice": (str, True),
                "played_fraction": ((int, float), False),
                "seconds": ((int, float), False),
            },
        )
        return await _run(_answer, d)

    def _answer(d):
        saved = service.answer(
            d["labeller"],
            d["pair_id"],
            d["choice"],
            played_fraction=float(d.get("played_fraction", 0.0)),
            client_seconds=d.get("seconds"),
        )
        return {**saved, "next": service.next_pair(d["labeller"])}

    @app.post("/api/undo")
    async def undo(request: Request):
        d = await body(request, {"labeller": (str, True)})
        return await _run(_undo, d)

    def _undo(d):
        done = service.undo(d["labeller"])
        return {**done, "next": service.next_pair(d["labeller"])}

    @app.get("/api/audio/{pair_id}.wav")
    async def audio(pair_id: str, labeller: str = ""):
        wav = await _run(service.audio_wav, labeller, pair_id)
        return Response(wav, media_type="audio/wav")

    @app.get("/api/stats")
    async def stats():
        return service.stats()

    return app


class ThreadedServer:
    """uvicorn serving ``app`` from a background thread (tests, benches, notebooks).

    Example:
        >>> srv = ThreadedServer(create_app(service), port=0).start()  # doctest: +SKIP
        >>> srv.url, srv.stop()  # doctest: +SKIP
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.host, self.port = host, port
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", limit_concurrency=64)
        )
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "ThreadedServer":
        import threading
        import time

        self._thread = threading.Thread(target=self.server.run, daemon=True, name="cqtml-label")
        self._thread.start()
        t0 = time.time()
        while not self.server.started:
            if not self._thread.is_alive() or time.time() - t0 > timeout:
                raise RuntimeError(f"labelling server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)


async def _run(fn, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


__all__ = ["MAX_BODY", "ThreadedServer", "create_app"]
