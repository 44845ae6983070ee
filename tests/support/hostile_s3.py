#!/usr/bin/env python3
"""A deliberately careless S3 server for the safety tests (tests/s3.rs).

Real S3 allows keys that s3s-fs refuses (a leading '/', empty segments), and real servers and
proxies sometimes answer ranged GETs wrongly. This server answers HEAD and GET for *any* bucket
and key with the bytes of one file, and misbehaves on GET as MODE says:

  ok           206 with the asked range (a correct server)
  ignore-range 200 with the whole object and no Content-Range
  extra        206 with the right Content-Range but 100 bytes too many
  wrong-range  206 for the bytes from one past the asked start
  short        206 with the right Content-Range but 100 bytes too few (announced)

Usage: hostile_s3.py FILE MODE LOG. Prints the port it listens on (127.0.0.1), then serves
until killed; appends "METHOD bucket key" for every request to LOG.
"""

import http.server
import sys
import urllib.parse

ETAG = '"hostile-etag-1"'


def main():
    body_path, mode, log_path = sys.argv[1:4]
    data = open(body_path, "rb").read()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def target(self):
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            _, bucket, key = (path.split("/", 2) + ["", ""])[:3]
            with open(log_path, "a") as log:
                log.write(f"{self.command} {bucket} {key!r}\n")
            return bucket, key

        def send(self, status, headers, body=b""):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            _, key = self.target()
            if not key:  # HeadBucket
                return self.send(200, {"Content-Length": "0"})
            self.send(200, {"Content-Length": str(len(data)), "ETag": ETAG, "Content-Type": "video/mp4"})

        def do_GET(self):
            self.target()
            spec = self.headers.get("Range", "")
            start, _, end = spec.removeprefix("bytes=").partition("-")
            start = int(start or 0)
            end = min(int(end or len(data) - 1), len(data) - 1)
            part = data[start : end + 1]
            content_range = f"bytes {start}-{end}/{len(data)}"
            if mode == "ignore-range":
                return self.send(200, {"Content-Length": str(len(data)), "ETag": ETAG}, data)
            if mode == "extra":
                part += b"x" * 100
            if mode == "wrong-range":
                part = data[start + 1 : end + 1]
                content_range = f"bytes {start + 1}-{end}/{len(data)}"
            if mode == "short":
                part = part[:-100]
            self.send(206, {"Content-Length": str(len(part)), "Content-Range": content_range, "ETag": ETAG}, part)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
