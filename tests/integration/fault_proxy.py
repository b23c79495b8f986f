#!/usr/bin/env python3
"""A TCP proxy that injects faults between a client and a server, for the
fault matrix (test_fault_matrix.sh). It forwards bytes as they are (TLS
passes through untouched) and, as asked:

  --delay-ms N         waits N ms before forwarding each chunk (a slow link)
  --stall-up-after N   after N bytes client->server in total, stops forwarding
                       that direction and creates --mark (a call caught mid-upload)
  --cut-down-after N   after N bytes server->client in total, forwards up to
                       the N-th byte, then closes both ends (a truncated stream)
  --cut-up-after N     the same for client->server (an upload cut short)

It writes the port it listens on to --port-file and runs until killed."""
import argparse
import os
import socket
import threading
import time

lock = threading.Lock()
totals = {"up": 0, "down": 0}


def pump(src, dst, direction, args):
    if direction == "up":
        limit = args.stall_up_after if args.stall_up_after is not None else args.cut_up_after
    else:
        limit = args.cut_down_after
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000.0)
            if limit is not None:
                with lock:
                    room = max(0, limit - totals[direction])
                    totals[direction] += len(data)
                if room < len(data):
                    if room:
                        dst.sendall(data[:room])
                    if direction == "up" and args.stall_up_after is not None:
                        if args.mark:
                            open(args.mark, "w").close()
                        while src.recv(65536):   # hold the call: read, forward nothing
                            pass
                    break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(conn, args):
    host, port = args.target.rsplit(":", 1)
    try:
        up = socket.create_connection((host, int(port)), timeout=10)
        up.settimeout(None)
    except OSError:
        conn.close()
        return
    a = threading.Thread(target=pump, args=(conn, up, "up", args), daemon=True)
    b = threading.Thread(target=pump, args=(up, conn, "down", args), daemon=True)
    a.start()
    b.start()
    a.join()
    b.join()
    conn.close()
    up.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--stall-up-after", type=int)
    p.add_argument("--cut-down-after", type=int)
    p.add_argument("--cut-up-after", type=int)
    p.add_argument("--mark")
    args = p.parse_args()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(tmp, args.port_file)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn, args), daemon=True).start()


if __name__ == "__main__":
    main()
