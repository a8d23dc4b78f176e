"""The demo's web backends: HTTP/1.1 with keep-alive on each address given, every method answered
200 with a short body naming the backend, method and path (96 KiB more under /download/). A
backend serves what it is asked: the denials in the demo are the dataplane's, by
profiles/rules/l7.rules.

Usage: backend.py READY-FILE HOST:PORT...   ([v6]:port for IPv6); writes READY-FILE when listening.
"""
import socket, socketserver, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def answer(self):
        n = int(self.headers.get('Content-Length') or 0)
        if n:
            self.rfile.read(n)
        host, port = self.server.server_address[:2]
        body = f'{self.command} {self.path} served by backend {host} port {port}\n'.encode()
        if self.path.startswith('/download/'):   # a larger answer: a flow of many packets
            body += bytes(range(256)) * 384      # 96 KiB
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_TRACE = answer

    def log_message(self, *a):
        pass


def serve(host, port):
    class S(socketserver.ThreadingMixIn, HTTPServer):
        address_family = socket.AF_INET6 if ':' in host else socket.AF_INET
        daemon_threads = True

        def server_bind(self):  # HTTPServer's own looks the name up (getfqdn): no DNS for that
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = host, port
    return S((host, port), Handler).serve_forever


for spec in sys.argv[2:]:
    host, port = spec.rsplit(':', 1)
    threading.Thread(target=serve(host.strip('[]'), int(port)), daemon=True).start()
open(sys.argv[1], 'w').write('ready\n')
threading.Event().wait()
