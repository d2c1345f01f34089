"""Runs the project's wsgi.py as a script (`python wsgi.py`) and prints every
address something started to listen on: a server would block here instead."""

import os
import runpy
import socket
import sys
from typing import Any

listened: list[Any] = []
real_listen = socket.socket.listen


def spy(self: socket.socket, *args: int) -> None:
    listened.append(self.getsockname())
    real_listen(self, *args)


socket.socket.listen = spy  # type: ignore[method-assign,assignment]
sys.path.insert(0, os.getcwd())  # as `python wsgi.py` from the project's folder has it
runpy.run_path("wsgi.py", run_name="__main__")
print("LISTENED", listened)
