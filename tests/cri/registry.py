"""A read-only image registry on 127.0.0.1 for critest by hand (CRI PullImage always asks
a registry, and none is reachable): the OCI distribution API's GET/HEAD of manifests and
blobs. Every repository name and tag gets a stand-in (images.py): the pause image for a
name containing "pause", busybox for any other; a manifest asked for by digest is served
only if it is one of ours."""
import http.server
import re
import threading

import images


class Registry:
    def __init__(self, built):
        self.by_kind = {"pause": built[images.PAUSE_IMAGE],
                        "busybox": built[images.BUSYBOX_IMAGE]}
        self.blobs = {}
        for image in built.values():
            self.blobs.update(image.blobs())
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.address = "%s:%d" % self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self):
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body):
                found = registry.lookup(self.path)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, media_type = found
                self.send_response(200)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Docker-Content-Digest", images.digest(data))
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                self.end_headers()
                if body:
                    self.wfile.write(data)
        return Handler

    def lookup(self, path):
        """(bytes, media type) of a /v2/ path, or None."""
        path = path.split("?")[0]
        if path.rstrip("/") == "/v2":
            return b"{}", "application/json"
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        if not m:
            return None
        name, what, ref = m.groups()
        if what == "blobs":
            blob = self.blobs.get(ref)
            return None if blob is None else (blob, "application/octet-stream")
        if ref.startswith("sha256:"):
            manifest = self.blobs.get(ref)
        else:
            manifest = self.by_kind["pause" if "pause" in name else "busybox"].manifest
        if manifest is None:
            return None
        return manifest, "application/vnd.oci.image.manifest.v1+json"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
