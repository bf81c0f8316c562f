"""Serving and writing the listening page: `nkd listen` (the standard library's HTTP server on
127.0.0.1 only; spectrogram images drawn on request) and `nkd report` (the same page and its
files written into a folder)."""

from __future__ import annotations

import errno
import getpass
import http.server
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from core.errors import RunError
from core.results.page import Page, png
from core.util.files import atomic_write, atomic_write_text

HOST = "127.0.0.1"
TYPES = {".flac": "audio/flac", ".png": "image/png", ".html": "text/html; charset=utf-8"}


def _handler(page: Page) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            path = unquote(urlparse(self.path).path).lstrip("/")
            if path in ("", "index.html"):
                return self._send(page.html.encode(), TYPES[".html"])
            found = page.files.get(path)
            if found is None:
                return self.send_error(404, "not a file of this page")
            kind, source = found
            try:
                body = png(source) if kind == "png" else source.read_bytes()
            except (OSError, RunError) as exc:
                return self.send_error(410, f"{source.name}: {exc}")
            return self._send(body, TYPES[".png" if kind == "png" else ".flac"])

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return  # quiet: the terminal shows the one ssh line

    return Handler


def server(page: Page, port: int) -> http.server.ThreadingHTTPServer:
    """The page's server on 127.0.0.1:port (0: any free port); RunError for a port in use."""
    try:
        return http.server.ThreadingHTTPServer((HOST, port), _handler(page))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise RunError(f"port {port} on {HOST} is in use; choose another with --port") \
                from None
        raise RunError(f"cannot listen on {HOST}:{port} ({exc.strerror or exc})") from None


def ssh_line(port: int) -> str:
    """What to type on a laptop to open the page: a local forward to this box's port."""
    return (f"ssh -N -L {port}:{HOST}:{port} {getpass.getuser()}@{socket.gethostname()}   "
            f"then open http://localhost:{port}/")


def write_report(page: Page, out: Path, say: Callable[[str], None] = print) -> int:
    """The page as a folder: index.html, the FLAC excerpts copied and the images drawn; the
    number of files written. `out` must be empty or not exist yet."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"{out}: exists and is not an empty folder; nothing was written")
    if out.is_symlink():
        raise RunError(f"{out}: is a symbolic link; nothing was written")
    out.mkdir(parents=True, exist_ok=True)
    for url, (kind, source) in page.files.items():
        target = out / url
        if kind == "png":
            body = png(source)
            atomic_write(target, lambda fh, body=body: fh.write(body), suffix=".png")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    atomic_write_text(out / "index.html", page.html)
    say(f"{out}/index.html: {len(page.files)} files beside it")
    return len(page.files) + 1
