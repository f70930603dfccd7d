"""Runs the docker CLI on a pseudo-terminal, as a user at a terminal would, and follows
a script of steps (JSON in argv[1]); used by tests/tests/attach_docker_cli.rs for -it.

Usage: python3 pty_docker.py STEPS_JSON ROWS COLS docker ARGS...
Steps: ["send", TEXT]            write TEXT to the terminal (\\u0010 is ctrl-p)
       ["expect", TEXT]          wait until TEXT appears in the output (since the last expect)
       ["resize", ROWS, COLS]    resize the terminal (the CLI gets SIGWINCH)
       ["until", SEND, TEXT]     send SEND every half second until TEXT appears
Prints "exit N" (the CLI's exit status) and, on failure, the transcript; exits 1 then.
The environment gives DOCKER_HOST and DOCKER_CONFIG. Generous deadlines (60 s per
step): they bound a hang, they do not measure anything.
"""
import fcntl
import json
import os
import pty
import select
import struct
import sys
import termios
import time

DEADLINE = 60.0


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    steps = json.loads(sys.argv[1])
    rows, cols = int(sys.argv[2]), int(sys.argv[3])
    argv = sys.argv[4:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    set_size(fd, rows, cols)
    out = b""
    mark = 0

    def read_some(timeout):
        nonlocal out
        r, _, _ = select.select([fd], [], [], timeout)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                return False
            out += data
        return True

    def fail(msg):
        sys.stdout.write(f"FAIL: {msg}\ntranscript: {out!r}\n")
        sys.exit(1)

    for step in steps:
        kind = step[0]
        if kind == "send":
            os.write(fd, step[1].encode())
        elif kind == "resize":
            set_size(fd, step[1], step[2])
            os.kill(pid, 28)  # SIGWINCH, as a terminal emulator's resize delivers
        elif kind in ("expect", "until"):
            want = (step[1] if kind == "expect" else step[2]).encode()
            end = time.time() + DEADLINE
            next_send = 0.0
            while want not in out[mark:]:
                if kind == "until" and time.time() >= next_send:
                    os.write(fd, step[1].encode())
                    next_send = time.time() + 0.5
                if time.time() > end:
                    fail(f"{want!r} did not appear")
                if not read_some(0.2):
                    if want not in out[mark:]:
                        fail(f"the terminal closed before {want!r} appeared")
            mark = out.index(want, mark) + len(want)
        else:
            fail(f"unknown step {step!r}")
    end = time.time() + DEADLINE
    while time.time() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            while read_some(0.1):
                pass
            code = os.waitstatus_to_exitcode(status)
            sys.stdout.write(f"exit {code}\n")
            sys.stderr.write(f"transcript: {out!r}\n")
            return
        read_some(0.1)
    fail("the docker CLI did not exit")


main()
